"""What the notebooks call: run (or reuse) a small CPU sweep through ``python -m src.run -m``, then show its
table and plots inline. Outputs go under ``$FUSIONVIT_NOTEBOOK_OUT`` (default ``multirun/notebooks``)."""
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from .loading import load_runs
from .ablation import analyse
from .flags import Checks
from .plots import write_plots
from .stats import varying_factors
from .tables import markdown_report, write_tables

ROOT = Path(__file__).resolve().parents[1]
# One torch thread per run: on a small shared CPU, more threads make these tiny models far slower.
QUICK = ["train.epochs=1", "data.limit_train=256", "data.limit_val=128", "logger=none", "train.threads=1"]


def output_root() -> Path:
    return Path(os.environ.get("FUSIONVIT_NOTEBOOK_OUT", ROOT / "multirun" / "notebooks"))


def has_completed_runs(sweep_dir: Path) -> bool:
    try:
        return not load_runs([sweep_dir], warn=lambda message: None).runs.empty
    except Exception:  # noqa: BLE001 - anything unreadable means "run it again"
        return False


def run_sweep(experiment: str, overrides: Sequence[str] = (), name: Optional[str] = None,
              reuse: bool = True) -> Path:
    """``python -m src.run -m +experiment=EXPERIMENT OVERRIDES...`` into ``output_root()/name``; with
    ``reuse`` an existing sweep there with completed runs is loaded instead of re-run."""
    sweep_dir = output_root() / (name or experiment)
    if reuse and has_completed_runs(sweep_dir):
        print(f"loading the existing sweep in {sweep_dir} (delete it, or reuse=False, to run it again)")
        return sweep_dir
    command = [sys.executable, "-m", "src.run", "-m", f"+experiment={experiment}", *overrides,
               f"hydra.sweep.dir={sweep_dir}"]
    print("$", " ".join(command[1:]))
    process = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                             env=dict(os.environ, WANDB_SILENT="true"))
    if process.returncode != 0:
        raise RuntimeError(f"the sweep failed (exit {process.returncode}):\n{process.stderr[-3000:]}")
    print(f"done: {sweep_dir}")
    return sweep_dir


def show_ablation(sweep_dir: Path, out: Optional[Path] = None, ref: Optional[str] = None,
                  checks: Checks = Checks()) -> pd.DataFrame:
    """Collates ``sweep_dir`` like ``python -m analysis.collate``, and shows the table (with its legend,
    seeds-needed and flag lines) and plots inline; returns the table (the columns of ablation.csv)."""
    from IPython.display import Image, Markdown, display

    collection = load_runs([sweep_dir], warn=print)
    factors = varying_factors(collection.runs, collection.candidate_factors)
    ablation = analyse(collection.runs, factors, ref=ref, warn=print, checks=checks)
    out = out or Path(sweep_dir) / "analysis"
    write_tables(ablation, out)
    plots = write_plots(collection.runs, ablation, out)
    display(Markdown(markdown_report(ablation)))
    for name in ("top1_vs_gflops", "top1_vs_params", "val_curves"):
        display(Image(filename=str(plots[name][0])))
    return ablation.table
