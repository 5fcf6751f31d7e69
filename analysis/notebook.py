"""What the notebooks call: run (or reuse) a CPU sweep through ``python -m src.run -m``, then show its table
and plots inline, and for the paper's ablations the paper's table, our models' costs beside it and the two side
by side (``shipped``, ``paper_vs_proxy``). Outputs go under ``$FUSIONVIT_NOTEBOOK_OUT`` (default
``multirun/notebooks``), never into the repo."""
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from .loading import load_runs
from .ablation import Ablation, analyse
from .flags import Checks
from .plots import write_plots
from .stats import varying_factors
from .tables import markdown_report, write_tables

ROOT = Path(__file__).resolve().parents[1]
# tqdm.auto (imported by timm) warns in a kernel without ipywidgets, naming this machine's paths.
warnings.filterwarnings("ignore", message="IProgress not found")
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
                  checks: Checks = Checks(), ref_reason: Optional[str] = None) -> Ablation:
    """Collates ``sweep_dir`` like ``python -m analysis.collate``, and shows the table (with its legend,
    seeds-needed and flag lines) and plots inline; returns the Ablation (``.table``: the columns of
    ablation.csv). Tables and plots are written to ``out`` (default ``<sweep_dir>/analysis``)."""
    from IPython.display import Image, Markdown, display

    collection = load_runs([sweep_dir], warn=print)
    factors = varying_factors(collection.runs, collection.candidate_factors)
    ablation = analyse(collection.runs, factors, ref=ref, warn=print, checks=checks, ref_reason=ref_reason)
    out = out or Path(sweep_dir) / "analysis"
    write_tables(ablation, out)
    plots = write_plots(collection.runs, ablation, out)
    display(Markdown(markdown_report(ablation)))
    for name in ("top1_vs_gflops", "top1_vs_params", "val_curves"):
        display(Image(filename=str(plots[name][0])))
    return ablation


# The show_* helpers below import shipped and paper_vs_proxy when called: shipped imports this module.
def show_paper_table(name: str) -> pd.DataFrame:
    """The paper's rows of ablation ``name`` (experiments/ablations.yaml) as printed."""
    from IPython.display import Markdown, display

    from .paper_vs_proxy import paper_table
    from .shipped import spec

    shown = paper_table(spec(name))
    display(Markdown(shown.to_markdown(index=False, disable_numparse=True)))
    return shown


def show_architecture(name: str) -> pd.DataFrame:
    """Each paper row's model built from the same description (ImageNet size, 1000 classes): params and GMACs
    counted on our model beside the paper's, as ``python -m analysis.paper`` does."""
    from IPython.display import Markdown, display

    from .paper import compare, to_markdown
    from .paper_vs_proxy import rows_of
    from .shipped import spec

    comparison = compare(rows_of(spec(name)))
    display(Markdown(to_markdown(comparison)))
    return comparison


def show_shipped_ablation(name: str, sweep_dir: Path) -> Ablation:
    """``show_ablation`` on an ablation's sweep, compared with the row that stands for the paper's reference
    row; tables and plots go to the notebook output folder."""
    from .shipped import spec

    ablation = spec(name)
    return show_ablation(sweep_dir, out=output_root() / name, ref=ablation.reference_label,
                         ref_reason=f"it stands for the paper's {ablation.paper_reference}")


def show_side_by_side(name: str, result: Ablation) -> pd.DataFrame:
    """Our rows beside the paper rows they stand for (and each branch alone, where the paper prints it)."""
    from IPython.display import Markdown, display

    from .paper_vs_proxy import branch_table, side_by_side
    from .shipped import spec

    ablation = spec(name)
    shown = side_by_side(ablation, result)
    display(Markdown(shown.to_markdown(index=False, disable_numparse=True)))
    branches = branch_table(ablation, result)
    if branches is not None:
        display(Markdown("Each branch's head alone (top-1 %):\n\n" +
                         branches.to_markdown(index=False, disable_numparse=True)))
    return shown
