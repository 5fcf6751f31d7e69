"""``results.json`` and ``val_predictions.npz`` on disk: written atomically by rank 0, read back as written."""
import json
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from .files import DiskFull, is_rank_zero, release_space, write_atomic
from .record import RunRecord

RESULTS_FILE = "results.json"
PREDICTIONS_FILE = "val_predictions.npz"


def write_results(run_dir: Path, record: RunRecord) -> Path:
    """Rank 0 only. On a full disk the run dir's reserve is given back and the write tried once more, so that
    the record of a failure (or of the last epoch) still lands."""
    path = Path(run_dir) / RESULTS_FILE
    if is_rank_zero():
        text = json.dumps(record, indent=2, default=str) + "\n"
        try:
            write_atomic(path, lambda file: file.write(text.encode()), needed_bytes=len(text))
        except DiskFull:
            if not release_space(run_dir):
                raise
            write_atomic(path, lambda file: file.write(text.encode()), needed_bytes=len(text))
    return path


def write_predictions(run_dir: Path, predictions: Dict[str, np.ndarray],
                      sources: Optional[np.ndarray] = None) -> Path:
    """``val_predictions.npz``: ``target``, ``pred`` (averaged logits) and ``pred_branch`` ([branches, N],
    S first) as int64, in the validation loader's fixed order, so that runs on the same data pair image by
    image (McNemar's test for single-seed comparisons); and ``source`` (int64 [N]) where images share a source
    (``src.data.validation_sources``), the unit the analysis resamples and tests over. Compressed: class
    indices are mostly zero bytes, 16 KB instead of 320 KB for the proxy's 10,080 images."""
    path = Path(run_dir) / PREDICTIONS_FILE
    if sources is not None:
        if len(sources) != len(predictions["target"]):
            raise ValueError(f"{len(sources)} validation sources for {len(predictions['target'])} predictions: "
                             f"the sources must be the validation loader's, one per image in its order")
        predictions = {**predictions, "source": np.asarray(sources, np.int64)}
    if is_rank_zero():
        write_atomic(path, lambda file: np.savez_compressed(file, **predictions))
    return path


def read_results(run_dir: Path) -> RunRecord:
    return json.loads((Path(run_dir) / RESULTS_FILE).read_text())
