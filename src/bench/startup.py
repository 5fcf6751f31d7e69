"""Start-up time: wall seconds of a fresh ``python -m src.run --help`` (Hydra composes the config and prints the
help; torch and the training code never load) against ``python -c "import torch"``, which any run pays."""
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[2]
HELP = [sys.executable, "-m", "src.run", "--help"]
IMPORT_TORCH = [sys.executable, "-c", "import torch"]
LIMIT_S = 3.0
TARGET = f"src.run --help beyond torch import < {LIMIT_S:g} s"


def wall_seconds(cmd: List[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed


def bench_startup(repeats: int = 3, warmup: int = 1) -> dict:
    """Medians of ``repeats`` runs of each command, interleaved so that machine noise hits both alike; the
    ``warmup`` runs (cold file cache, .pyc writing) are dropped."""
    help_s, torch_s = [], []
    for _ in range(warmup + repeats):
        torch_s.append(wall_seconds(IMPORT_TORCH))
        help_s.append(wall_seconds(HELP))
    help_s, torch_s = help_s[warmup:], torch_s[warmup:]
    help_median, torch_median = statistics.median(help_s), statistics.median(torch_s)
    return {"repeats": repeats, "help_s": help_median, "import_torch_s": torch_median,
            "beyond_torch_s": help_median - torch_median, "times_s": {"help": help_s, "import_torch": torch_s}}


def to_markdown(startup: dict) -> List[str]:
    return ["## Start-up", "", f"| command | wall s (median of {startup['repeats']}) |", "|---|---|",
            f"| `python -m src.run --help` | {startup['help_s']:.2f} |",
            f"| `python -c \"import torch\"` | {startup['import_torch_s']:.2f} |",
            f"| difference | {startup['beyond_torch_s']:.2f} |", ""]
