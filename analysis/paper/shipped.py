"""The results that ship with the repo: one CPU sweep per ablation the paper reports, under
``results/cpu/<ablation>/<run>/`` (each run's ``results.json`` and ``val_predictions.npz``; checkpoints and W&B
files stay in the sweep folder). ``experiments/ablations.yaml`` says which preset each ablation runs and which of
its rows stands for which row of the paper.

``sweep_for(name)`` is what a notebook loads: the shipped folder, checked first (an empty or foreign folder is
an error that says what was looked for); ``rerun=True`` runs the preset again (``multirun/<preset>``, one job
per core, as ``make run`` does) and replaces the shipped files; ``rerun="quick"`` runs a one-epoch version into
the notebook output folder and leaves the shipped files alone (the tests' setting).
"""
import json
import os
import shutil
from pathlib import Path
from typing import Dict, List, Union

import numpy as np

from src.train.record_io import PREDICTIONS_FILE, RESULTS_FILE

from . import ROOT
from .ablations import spec
from .sweeps import QUICK, run_sweep

# How the shipped sweeps ran: one job per core, one thread each (the thread count changes the numbers).
SWEEP_OVERRIDES = ["hydra/launcher=parallel", "train.threads=1"]
QUICK_SEEDS = "seed=0,1"


class ShippedResultsError(RuntimeError):
    """A folder that holds no results of the ablation asked for: the message says what was looked for."""


def results_root() -> Path:
    return Path(os.environ.get("FUSIONVIT_RESULTS_DIR", ROOT / "results" / "cpu"))


def results_dir(name: str) -> Path:
    return results_root() / name


def rerun_setting(rerun: Union[bool, str]) -> Union[bool, str]:
    """The notebook's RERUN flag, unless ``$FUSIONVIT_RERUN`` (1 or quick) overrides it: how
    ``python -m analysis.paper.build_notebooks --rerun`` and the tests re-run every notebook without editing it."""
    setting = os.environ.get("FUSIONVIT_RERUN", "")
    if setting in ("1", "true"):
        return True
    if setting == "quick":
        return "quick"
    if setting not in ("", "0", "false"):
        raise ValueError(f"FUSIONVIT_RERUN={setting!r}: use 1 (re-run the sweeps) or quick (one epoch)")
    return rerun


def sweep_for(name: str, rerun: Union[bool, str] = False) -> Path:
    """The folder a notebook collates: the shipped results (regenerated first with ``rerun=True``), or a
    quick sweep's folder (``rerun="quick"``)."""
    ablation = spec(name)
    rerun = rerun_setting(rerun)
    if rerun == "quick":
        return run_sweep(ablation.preset, [*SWEEP_OVERRIDES, *QUICK, QUICK_SEEDS], name=f"{ablation.preset}_quick",
                         reuse=False)
    if rerun:
        print(f"re-running {ablation.preset}: about {ablation.minutes:g} minutes on 2 cores")
        sweep_dir = run_sweep(ablation.preset, SWEEP_OVERRIDES, name=ablation.preset, reuse=False)
        export(sweep_dir, results_dir(name))
    folder = results_dir(name)
    check_folder(folder, ablation.preset)
    return folder


def experiments_in(folder: Path) -> Dict[str, int]:
    """How many results.json under ``folder`` each preset (Hydra's experiment choice) wrote."""
    counts: Dict[str, int] = {}
    for file in sorted(folder.rglob(RESULTS_FILE)):
        try:
            experiment = str((json.loads(file.read_text()).get("choices") or {}).get("experiment"))
        except (OSError, ValueError, AttributeError):
            experiment = "unreadable"
        counts[experiment] = counts.get(experiment, 0) + 1
    return counts


def check_folder(folder: Path, preset: str) -> None:
    """Raises ShippedResultsError unless ``folder`` holds results of ``+experiment=preset`` only."""
    regenerate = ("regenerate them with RERUN = True in the notebook, or "
                  f"python -m analysis.paper.build_notebooks --rerun (runs +experiment={preset})")
    looked = f"looked for {RESULTS_FILE} files of +experiment={preset} under {display_path(folder)}"
    if not folder.is_dir():
        raise ShippedResultsError(f"{looked}: the folder does not exist; {regenerate}")
    counts = experiments_in(folder)
    if not counts:
        raise ShippedResultsError(f"{looked}: found none; {regenerate}")
    foreign = {experiment: count for experiment, count in counts.items() if experiment != preset}
    if foreign:
        listed = ", ".join(f"{count} of +experiment={experiment}" for experiment, count in foreign.items())
        raise ShippedResultsError(f"{looked}: it holds {listed}; point the notebook at a folder of "
                                  f"+experiment={preset} runs only, or {regenerate}")


def display_path(path: Path) -> str:
    """Relative to the repo where possible: stored notebook outputs must not name this machine's folders."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def export(sweep_dir: Path, dest: Path) -> List[Path]:
    """Copies each run's shipped files from ``sweep_dir`` to ``dest/<run>/``, replacing the runs there (a
    shrunk sweep leaves no stale run). ``run_dir`` and the W&B folder are written relative to the repo."""
    runs = sorted(file.parent for file in Path(sweep_dir).rglob(RESULTS_FILE) if ".hydra" not in file.parts)
    if not runs:
        raise ShippedResultsError(f"nothing to export: no {RESULTS_FILE} under {sweep_dir}")
    if dest.is_dir():
        for old in dest.iterdir():
            if old.is_dir() and (old / RESULTS_FILE).exists():
                shutil.rmtree(old)
    written = []
    for run in runs:
        target = dest / run.relative_to(sweep_dir)
        target.mkdir(parents=True, exist_ok=True)
        results = json.loads((run / RESULTS_FILE).read_text())
        results["run_dir"] = display_path(target)
        if isinstance(results.get("wandb"), dict):
            results["wandb"]["dir"] = None  # the offline W&B files stay in the sweep folder
        (target / RESULTS_FILE).write_text(json.dumps(results, indent=1) + "\n")
        if (run / PREDICTIONS_FILE).exists():  # compressed (older runs wrote them plain): 20x smaller in the repo
            with np.load(run / PREDICTIONS_FILE) as saved:
                np.savez_compressed(target / PREDICTIONS_FILE, **{key: saved[key] for key in saved.files})
        written.append(target)
    print(f"exported {len(written)} runs to {display_path(dest)}")
    return written
