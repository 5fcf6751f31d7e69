"""``python -m src.sync DIR... [--dry-run] [-- WANDB_SYNC_OPTIONS]``: upload the W&B offline runs under DIRs.

Finds every ``offline-run-*`` folder under the dirs (a run dir, a sweep folder such as ``multirun/NAME`` or
``multirun/wandb/SWEEP_ID``), groups them by run id, prints each run with its halves (a killed and resumed run
leaves one folder per launch, all with the run's id) oldest first, then hands them, in that order, to
``wandb sync``, which uploads the folders of one id as one run. ``--dry-run`` prints that command and stops. Exits 1,
naming the dirs, when there is no offline run under them.
"""
import argparse
import csv
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterable, List, Optional, Set, Tuple

from src.train.loggers import METRICS_FILE
from src.train.wandb_files import by_run, find_offline_runs, read_offline_run
from src.train.wandb_logger import api_key_configured


def spans(numbers: Iterable[int]) -> str:
    """``epochs 0-2, 5`` (a gap shows), ``epoch 3``, ``no epochs``."""
    numbers, runs = sorted(set(numbers)), []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    if not runs:
        return "no epochs"
    text = ", ".join(str(first) if first == last else f"{first}-{last}" for first, last in runs)
    return f"epoch{'s' if len(numbers) > 1 else ''} {text}"


def trail_epochs(folder: Path) -> Tuple[Optional[Path], Set[int]]:
    """The epochs of the run dir's ``metrics.csv`` (W&B's files are in ``RUN_DIR/wandb/offline-run-*``)."""
    trail = folder.parent.parent / METRICS_FILE
    if folder.parent.name != "wandb" or not trail.is_file():
        return None, set()
    with open(trail, newline="") as file:
        rows = [row for row in csv.DictReader(file) if None not in row and None not in row.values()]
    return trail, {int(row["epoch"]) for row in rows if row.get("kind") == "epoch"}


def describe(run_id: str, folders: List[Path]) -> str:
    """The run's parts and the epochs they hold together, and the epochs its ``metrics.csv`` has beyond them
    (a killed launch whose run was not resumed since: the resumed launch logs them again)."""
    halves = [read_offline_run(folder) for folder in folders]
    epochs = {epoch for half in halves for epoch in half.epochs}
    trail, finished = trail_epochs(folders[-1])
    lost = sorted(finished - epochs)
    if not lost:
        gap = ""
    elif halves[-1].exit_code is None:  # the last launch was killed, and the run not resumed since
        gap = (f"; {spans(lost)} of {trail} not in them (a kill stopped the launch before W&B wrote them out: "
               f"resuming the run, with the same command, logs them again)")
    else:  # a launch without W&B, or of a harness from before the resume logged them again
        gap = f"; {spans(lost)} of {trail} not in them (only the run dir has them)"
    return (f"run {run_id}: {len(folders)} part(s), {spans(epochs)}{gap}: "
            + ", ".join(str(folder) for folder in folders))


def wandb_command() -> List[str]:
    """The ``wandb`` CLI of this interpreter's environment."""
    beside = Path(sys.executable).with_name("wandb")
    return [str(beside)] if beside.exists() else [shutil.which("wandb") or "wandb"]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.sync", description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="run dirs or sweep folders (searched recursively)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and the wandb sync command only")
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []  # after --: more `wandb sync` options (-p, -e)
    args = parser.parse_args(argv[:len(argv) - len(extra) - (1 if "--" in argv else 0)])
    runs = by_run(find_offline_runs(args.dirs))
    if not runs:
        looked = ", ".join(str(path) for path in args.dirs)
        print(f"error: no W&B offline runs (offline-run-*/run-*.wandb) under {looked}: runs logged with "
              f"logger=none or online have none to upload", file=sys.stderr)
        return 1
    for run_id, folders in runs.items():
        print(describe(run_id, folders))
    command = wandb_command() + ["sync", *extra, *[str(folder) for folders in runs.values() for folder in folders]]
    print(" ".join(command), flush=True)
    if args.dry_run:
        return 0
    if not api_key_configured():  # wandb sync would otherwise prompt for a login
        print("error: no W&B API key configured: run `wandb login` or set WANDB_API_KEY, then sync again",
              file=sys.stderr)
        return 1
    return subprocess.run(command).returncode

