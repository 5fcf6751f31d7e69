"""Per-branch top-1 of ``data=multiscale_digits`` runs split by digit size, from each run's ``val_predictions.npz``
(per-image predictions in the val loader's order) and the validation renders' sizes, rebuilt from the run's own
config (the set depends on ``data.split_seed`` alone):

    python -m src.bench.scale_split multirun/DATE/TIME [RUN_DIR ...]

One row per run: the fused top-1, each branch head's alone, on small / medium / large digits (the log-thirds of
the scale range: 12-17, 17-23, 23-32 px on a 32 px canvas at the default scales 0.375-1), the images only the S or
only the L branch gets right, and both branches' oracle (either right), with the time per epoch and per run."""
import argparse
import math
from pathlib import Path
from typing import Dict, List

import numpy as np
import pandas as pd

from src.data.multiscale_digits import RenderSpec, validation_renders
from src.train.record_io import RESULTS_FILE, read_results

SIZES = ("small", "medium", "large")


def size_bins(sides: np.ndarray, spec: RenderSpec) -> np.ndarray:
    """0, 1, 2: the log-thirds of ``[min_scale, max_scale]`` the digit's side falls in."""
    low, high = math.log(spec.min_scale * spec.canvas), math.log(spec.max_scale * spec.canvas)
    edges = np.exp(low + (high - low) * np.array([1 / 3, 2 / 3]))
    return np.digitize(sides, edges)


def split_run(run_dir: Path) -> Dict:
    results = read_results(run_dir)
    data, model = results["config"]["data"], results["model"]
    render = data["render"]
    spec = RenderSpec(data["image_size"] or model["img_size"], render["min_scale"], render["max_scale"],
                      render["clutter"], data["interpolation"])
    _, targets, sides = validation_renders(spec, render["val_renders_per_digit"], data["val_fraction"],
                                           data["split_seed"])
    with np.load(Path(run_dir) / "val_predictions.npz") as saved:
        target, pred, pred_branch = saved["target"], saved["pred"], saved["pred_branch"]
    if not np.array_equal(target, targets[:len(target)]):
        raise ValueError(f"{run_dir}: val_predictions.npz's targets are not the validation renders' in order")
    bins, right = size_bins(sides[:len(target)], spec), pred_branch == target
    row = {"run": str(run_dir), "fusion": results["config"]["fusion"]["name"], "seed": results["config"]["seed"],
           "clutter": spec.clutter, "epochs": len(results["history"]), "top1": 100 * np.mean(pred == target)}
    for branch, name in enumerate(("S", "L")):
        row[f"{name} top1"] = 100 * right[branch].mean()
        for size, label in enumerate(SIZES):
            row[f"{name} {label}"] = 100 * right[branch][bins == size].mean()
    for size, label in enumerate(SIZES):
        row[f"fused {label}"] = 100 * np.mean((pred == target)[bins == size])
    row.update({"only S": 100 * np.mean(right[0] & ~right[1]), "only L": 100 * np.mean(right[1] & ~right[0]),
                "oracle": 100 * np.mean(right.any(0)),
                "s/epoch": np.mean([r["epoch_time_s"] for r in results["history"]]),
                "run s": results["wall_time_s"]})
    return row


def run_dirs(paths: List[str]) -> List[Path]:
    found = []
    for path in map(Path, paths):
        found += [path] if (path / RESULTS_FILE).exists() else sorted(p.parent for p in path.glob(f"*/{RESULTS_FILE}"))
    if not found:
        raise SystemExit(f"no {RESULTS_FILE} in {', '.join(paths)} or their subfolders")
    return found


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="run dirs, or sweep dirs holding them")
    table = pd.DataFrame([split_run(path) for path in run_dirs(parser.parse_args(argv).paths)])
    print(table.drop(columns="run").to_markdown(index=False, floatfmt=".1f"))


if __name__ == "__main__":
    main()
