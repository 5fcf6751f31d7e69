"""``results.json``: the local record of a run that the analysis collates (schema 1, see the README)."""
import hashlib
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict

import numpy as np

SCHEMA = 1
RESULTS_FILE = "results.json"
PREDICTIONS_FILE = "val_predictions.npz"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def config_hash(resolved_config: Dict[str, Any]) -> str:
    """sha256 of the resolved config, independent of key order: equal configs, equal hashes."""
    return hashlib.sha256(json.dumps(resolved_config, sort_keys=True, default=str).encode()).hexdigest()


def write_atomic(path: Path, write) -> Path:
    """A temp file in the same folder, then os.replace: a reader never sees half a file. Rank 0 only."""
    if int(os.environ.get("RANK", 0)) != 0:  # DDP (torchrun): only rank 0 writes
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_path = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f"{path.suffix}.tmp")
    try:
        with os.fdopen(handle, "wb") as temp:
            write(temp)
        os.replace(temp_path, path)
    except BaseException:
        Path(temp_path).unlink(missing_ok=True)
        raise
    return path


def write_results(run_dir: Path, results: Dict[str, Any]) -> Path:
    text = json.dumps(results, indent=2, default=str) + "\n"
    return write_atomic(Path(run_dir) / RESULTS_FILE, lambda file: file.write(text.encode()))


def write_predictions(run_dir: Path, predictions: Dict[str, np.ndarray]) -> Path:
    """``val_predictions.npz``: ``target``, ``pred`` (averaged logits) and ``pred_branch`` ([branches, N],
    S first) as int64, in the validation loader's fixed order, so that runs on the same data pair image by
    image (McNemar's test for single-seed comparisons)."""
    return write_atomic(Path(run_dir) / PREDICTIONS_FILE, lambda file: np.savez(file, **predictions))


def read_results(run_dir: Path) -> Dict[str, Any]:
    return json.loads((Path(run_dir) / RESULTS_FILE).read_text())
