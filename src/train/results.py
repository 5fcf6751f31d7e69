"""``results.json``: the local record of a run that the analysis collates (schema 1, see the README)."""
import hashlib
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict

SCHEMA = 1
RESULTS_FILE = "results.json"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def config_hash(resolved_config: Dict[str, Any]) -> str:
    """sha256 of the resolved config, independent of key order: equal configs, equal hashes."""
    return hashlib.sha256(json.dumps(resolved_config, sort_keys=True, default=str).encode()).hexdigest()


def write_results(run_dir: Path, results: Dict[str, Any]) -> Path:
    """Writes atomically (a temp file in the same folder, then os.replace): a reader never sees half a file."""
    if int(os.environ.get("RANK", 0)) != 0:  # DDP (torchrun): only rank 0 writes
        return Path(run_dir) / RESULTS_FILE
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / RESULTS_FILE
    handle, temp_path = tempfile.mkstemp(dir=run_dir, prefix=".results.", suffix=".json.tmp")
    try:
        with os.fdopen(handle, "w") as temp:
            json.dump(results, temp, indent=2, default=str)
            temp.write("\n")
        os.replace(temp_path, path)
    except BaseException:
        Path(temp_path).unlink(missing_ok=True)
        raise
    return path


def read_results(run_dir: Path) -> Dict[str, Any]:
    return json.loads((Path(run_dir) / RESULTS_FILE).read_text())
