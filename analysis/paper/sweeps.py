"""CPU sweeps for the notebooks: ``python -m src.run -m +experiment=...`` into ``$FUSIONVIT_NOTEBOOK_OUT``
(default ``multirun/notebooks``), never into the repo; an existing sweep there with completed runs is reused."""
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Optional, Sequence

from analysis.runs.local import load_runs

from . import ROOT

# Every notebook imports this module. tqdm.auto (imported by timm) warns in a kernel without ipywidgets, naming
# this machine's paths.
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
