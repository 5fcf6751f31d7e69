"""Per-image validation predictions of one run, ``<run_dir>/val_predictions.npz`` (written by src.run):
``target`` and ``pred`` (argmax of the fused logits) int arrays [N], ``pred_branch`` [branches, N], and
``source`` [N] where images share a source (the held-out digit of a multiscale_digits render). They let
single-seed rows be compared over images instead of over seeds, with the source as the unit where there is one.
Files written before ``source`` was saved get it from the run's recorded config beside them
(``src.data.validation_sources``, the rule the writer uses)."""
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from src.train.record_io import PREDICTIONS_FILE, RESULTS_FILE  # the writer's names: one source


@dataclass
class Predictions:
    target: np.ndarray
    pred: np.ndarray
    source: Optional[np.ndarray] = None  # each image's source [N]; None: every image its own

    @property
    def correct(self) -> np.ndarray:
        return self.pred == self.target

    @property
    def units(self) -> int:
        """The independent units: distinct sources, else images."""
        return len(self.target) if self.source is None else len(np.unique(self.source))

    @property
    def clustered(self) -> bool:
        """Some images share a source: statistics over images must take the source as the unit."""
        return self.units < len(self.target)


def read_predictions(run_dir: Union[str, Path]) -> Union[Predictions, str]:
    """The run's predictions, or why they cannot be used (missing, unreadable, malformed)."""
    path = Path(str(run_dir)) / PREDICTIONS_FILE
    if not path.is_file():
        return f"{PREDICTIONS_FILE} is missing"
    try:
        with np.load(path, allow_pickle=False) as saved:
            target, pred = np.asarray(saved["target"]), np.asarray(saved["pred"])
            source = np.asarray(saved["source"]) if "source" in saved.files else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        return f"{PREDICTIONS_FILE} is unreadable ({type(error).__name__}: {error})"
    if target.ndim != 1 or target.shape != pred.shape or target.size == 0:
        return f"{PREDICTIONS_FILE} is malformed (target {target.shape}, pred {pred.shape})"
    if source is not None and source.shape != target.shape:
        return f"{PREDICTIONS_FILE} is malformed (target {target.shape}, source {source.shape})"
    if source is None:
        source = recorded_sources(Path(str(run_dir)), len(target))
    return Predictions(target=target.astype(np.int64), pred=pred.astype(np.int64),
                       source=None if source is None else source.astype(np.int64))


def recorded_sources(run_dir: Path, num_val: int) -> Optional[np.ndarray]:
    """The sources of a run's ``num_val`` validation images from the resolved config in its results.json, for
    files written before ``source`` was saved; None where the record has none to give (every image its own
    unit: another dataset, or no readable config)."""
    try:
        data = json.loads((run_dir / RESULTS_FILE).read_text()).get("config", {}).get("data")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(data, dict) or data.get("name") != "multiscale_digits":  # the one dataset with shared
        return None  # sources: the others are spared importing src.data, which loads torch
    from src.data import validation_sources

    try:
        return validation_sources(OmegaConf.create(data), num_val)
    except (AttributeError, TypeError, ValueError, OmegaConfBaseException):  # a record from before data.render
        return None


def pairing_problem(first: Predictions, second: Predictions) -> Optional[str]:
    """Why two runs' predictions cannot be paired image by image (different validation images, or the same images
    from other sources), or None."""
    if first.target.shape != second.target.shape or not np.array_equal(first.target, second.target):
        return "their validation targets differ (not the same images in the same order)"
    if first.source is not None and second.source is not None and not np.array_equal(first.source, second.source):
        return "their validation sources differ (the same targets, drawn from other source images)"
    return None
