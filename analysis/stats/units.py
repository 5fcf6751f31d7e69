"""The unit of validation noise. Where validation images share a source (data=multiscale_digits: 28 renders of
each of 360 held-out digits), they succeed or fail together, and statistics that count the images as independent
understate the uncertainty by the design effect (Kish, Survey Sampling, 1965):

    deff = Var_cluster(p) / Var_binomial(p),   Var_binomial(p) = p (1 - p) / n,

with Var_cluster the linearised variance of the ratio estimator p = sum_i y_i / sum_i m_i over the k sources
(y_i the images of source i right, m_i its images; Cochran, Sampling Techniques, 1977, section 6.11):

    Var_cluster(p) = k / (k - 1) * sum_i (y_i - p m_i)^2 / n^2.

The k / (k - 1) is the small-sample factor of Obuchowski (1998), which ``compare`` tests with; so a set of
sources that each hold one image has deff = n / (n - 1), and sources of m images each all right or all wrong have
deff = m k / (k - 1). The ICC is the one deff = 1 + (m - 1) ICC implies at the mean source size m = n / k, and
n / deff is the effective number of independent images.

``python -m analysis.stats.units RUN_OR_SWEEP_DIR...`` prints it per run, and per folder of runs the mean and
range (docs/analysis.md, "The unit of noise").
"""
import argparse
import math
import os
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from analysis.runs.predictions import Predictions, read_predictions
from src.train.record_io import PREDICTIONS_FILE


@dataclass(frozen=True)
class DesignEffect:
    """One run's top-1 on its validation set: images, independent units (sources), the design effect, the ICC it
    implies, and the standard error of top-1 (points) counting images as independent and sources as the unit."""
    images: int
    units: int
    deff: float
    icc: float
    se_binomial: float
    se_cluster: float

    @property
    def effective_images(self) -> float:
        return self.images / self.deff


def source_totals(values: np.ndarray, source: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(the sum of ``values`` over each source's images, each source's image count), sources in sorted order."""
    _, index = np.unique(source, return_inverse=True)
    return np.bincount(index, weights=values), np.bincount(index).astype(float)


def ratio_variance(totals: np.ndarray, sizes: np.ndarray) -> float:
    """The variance of sum(totals) / sum(sizes) with the sources as the unit: k / (k - 1) sum (t_i - r m_i)^2 /
    n^2 (module docstring); NaN with fewer than two sources."""
    k, n = len(totals), float(np.sum(sizes))
    if k < 2:
        return math.nan
    ratio = float(np.sum(totals)) / n
    return k / (k - 1) * float(np.sum((totals - ratio * sizes) ** 2)) / n ** 2


def design_effect(correct: np.ndarray, source: np.ndarray) -> DesignEffect:
    """The design effect of one run's per-image correctness over its images' sources (module docstring); deff and
    ICC are NaN where top-1 is 0 or 100 (no binomial variance to compare with)."""
    correct, source = np.asarray(correct, float), np.asarray(source)
    if correct.shape != source.shape or correct.ndim != 1 or correct.size == 0:
        raise ValueError(f"correct {correct.shape} and source {source.shape} must be the same non-empty 1-D shape")
    images, accuracy = len(correct), float(correct.mean())
    totals, sizes = source_totals(correct, source)
    cluster, binomial = ratio_variance(totals, sizes), accuracy * (1.0 - accuracy) / images
    deff = cluster / binomial if binomial > 0 else math.nan
    mean_size = images / len(totals)
    icc = (deff - 1.0) / (mean_size - 1.0) if mean_size > 1 else math.nan
    return DesignEffect(images=images, units=len(totals), deff=deff, icc=icc, se_binomial=100 * math.sqrt(binomial),
                        se_cluster=100 * math.sqrt(cluster))


def predictions_design_effect(predictions: Predictions) -> Optional[DesignEffect]:
    """None where no two images share a source (nothing to correct)."""
    return design_effect(predictions.correct, predictions.source) if predictions.clustered else None


@lru_cache(maxsize=4096)
def _cached(path: str, _modified: int) -> Optional[DesignEffect]:
    predictions = read_predictions(path)
    return predictions_design_effect(predictions) if isinstance(predictions, Predictions) else None


def run_design_effect(run_dir: Union[str, Path, None]) -> Optional[DesignEffect]:
    """The design effect of a run's final predictions (``val_predictions.npz``), read once per file version; None
    where there are none, they cannot be read, or no two images share a source."""
    if not isinstance(run_dir, (str, Path)):
        return None
    try:
        modified = os.stat(Path(run_dir) / PREDICTIONS_FILE).st_mtime_ns
    except OSError:
        return None
    return _cached(str(run_dir), modified)


def mean_design_effect(effects: Iterable[DesignEffect]) -> Optional[DesignEffect]:
    """Each field's mean over ``effects`` (counts rounded); None for none."""
    effects = list(effects)
    if not effects:
        return None
    means = {field.name: float(np.mean([getattr(effect, field.name) for effect in effects]))
             for field in fields(DesignEffect)}
    return DesignEffect(**{**means, "images": round(means["images"]), "units": round(means["units"])})


def table_design_effect(run_dirs: Iterable[Union[str, Path]]) -> Optional[DesignEffect]:
    """The mean design effect over the runs of ``run_dirs`` whose images share sources; None if none does."""
    return mean_design_effect(effect for effect in map(run_design_effect, run_dirs) if effect is not None)


def prediction_dirs(paths: Sequence[Union[str, Path]]) -> List[Path]:
    """The run dirs under ``paths`` (each a run or a folder of runs) that hold predictions, sorted."""
    found = []
    for path in map(Path, paths):
        if not path.exists():
            raise SystemExit(f"{path} does not exist: give a run dir or a folder of runs (e.g. results/cpu/fusion)")
        found += [file.parent for file in (path.rglob(PREDICTIONS_FILE) if path.is_dir() else [])]
    return sorted(set(found))


def effects_table(run_dirs: Sequence[Path]) -> pd.DataFrame:
    """One row per run whose images share sources: folder, run, its ``DesignEffect`` and effective images."""
    rows = []
    for run_dir in run_dirs:
        effect = run_design_effect(run_dir)
        if effect is not None:
            rows.append({"folder": str(run_dir.parent), "run": run_dir.name, **vars(effect),
                         "effective_images": effect.effective_images})
    return pd.DataFrame(rows)


def folder_lines(folder: str, runs: pd.DataFrame) -> List[str]:
    mean = mean_design_effect(DesignEffect(**{field.name: row[field.name] for field in fields(DesignEffect)})
                              for _, row in runs.iterrows())
    return [f"{folder}: {len(runs)} runs, {mean.images:,} images from {mean.units:,} sources",
            runs.drop(columns="folder").to_string(index=False, float_format=lambda value: f"{value:.3f}"),
            f"mean: deff {mean.deff:.2f} (range {runs['deff'].min():.2f}-{runs['deff'].max():.2f}), ICC "
            f"{mean.icc:.3f}, effective images {mean.effective_images:,.0f} of {mean.images:,}, top-1 SE "
            f"{mean.se_binomial:.2f} points counting images vs {mean.se_cluster:.2f} with the source as the unit", ""]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.stats.units", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="run dirs or folders of runs (each with val_predictions.npz)")
    args = parser.parse_args(argv)
    runs = effects_table(prediction_dirs(args.paths))
    if runs.empty:
        print("no run whose validation images share a source: every image is its own unit (deff 1)")
        return 0
    for folder, group in runs.groupby("folder", sort=True):
        print("\n".join(folder_lines(folder, group)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
