"""Per-image validation predictions of one run, ``<run_dir>/val_predictions.npz`` (written by src.run):
``target`` and ``pred`` (argmax of the fused logits) int arrays [N], ``pred_branch`` [branches, N]. They let
single-seed rows be compared over images instead of over seeds."""
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from src.train.record_io import PREDICTIONS_FILE  # the writer's name: one source


@dataclass
class Predictions:
    target: np.ndarray
    pred: np.ndarray

    @property
    def correct(self) -> np.ndarray:
        return self.pred == self.target


def read_predictions(run_dir: Union[str, Path]) -> Union[Predictions, str]:
    """The run's predictions, or why they cannot be used (missing, unreadable, malformed)."""
    path = Path(str(run_dir)) / PREDICTIONS_FILE
    if not path.is_file():
        return f"{PREDICTIONS_FILE} is missing"
    try:
        with np.load(path, allow_pickle=False) as saved:
            target, pred = np.asarray(saved["target"]), np.asarray(saved["pred"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        return f"{PREDICTIONS_FILE} is unreadable ({type(error).__name__}: {error})"
    if target.ndim != 1 or target.shape != pred.shape or target.size == 0:
        return f"{PREDICTIONS_FILE} is malformed (target {target.shape}, pred {pred.shape})"
    return Predictions(target=target.astype(np.int64), pred=pred.astype(np.int64))


def pairing_problem(first: Predictions, second: Predictions) -> Optional[str]:
    """Why two runs' predictions cannot be paired image by image (different validation images), or None."""
    if first.target.shape != second.target.shape or not np.array_equal(first.target, second.target):
        return "their validation targets differ (not the same images in the same order)"
    return None
