"""``python tests/fault_injection.py FAULT [hydra overrides]``: ``python -m src.run`` with one fault at an exact
moment, for tests/test_faults.py. The harness itself has no fault hooks: this wraps the function every
checkpoint write goes through (``write_atomic`` as ``src.train.checkpoint`` calls it).

FAULT is one of
- ``kill-after-last:E``: SIGKILL right after ``last.pt`` of epoch E (0-based) is in place, before that epoch's
  ``metrics.csv`` row and ``results.json``;
- ``kill-in-best:E``: SIGKILL halfway through writing epoch E's ``best.pt``;
- ``fill-disk-before-last:E``: fill the run dir's file system before epoch E's ``last.pt``;
- ``fill-disk-and-reserve-before-last:E``: the same, and take the run dir's reserve too (nothing can be written).
"""
import io
import os
import runpy
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: run as a script, from tests/

import torch  # noqa: E402

import src.train.checkpoint as checkpoint  # noqa: E402
from src.train.files import RESERVE_FILE  # noqa: E402

FILLER = "filler.bin"


def epoch_of(write) -> int:
    """The epoch a ``Saver.save`` payload ends (its ``TrainState.epoch`` is the next one)."""
    return write.args[0]["state"]["epoch"] - 1


def fill(folder: Path) -> None:
    with open(folder.parent / FILLER, "ab") as filler:
        try:
            while True:
                filler.write(bytes(1 << 16))
                filler.flush()
        except OSError:
            pass


def inject(fault: str) -> None:
    kind, epoch = fault.split(":")
    real = checkpoint.write_atomic

    def write_atomic(path, write, keep_previous=None, needed_bytes=None):
        path = Path(path)
        due = epoch_of(write) == int(epoch)
        if due and kind == "kill-in-best" and path.name == checkpoint.BEST:
            def half_then_kill(file):
                buffer = io.BytesIO()
                write(buffer)
                file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                file.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return real(path, half_then_kill, keep_previous, needed_bytes)
        if due and kind.startswith("fill-disk") and path.name == checkpoint.LAST:
            if kind == "fill-disk-and-reserve-before-last":
                (path.parent / RESERVE_FILE).unlink(missing_ok=True)
            fill(path.parent)  # the run dir's parent: the tmpfs the test mounted
        done = real(path, write, keep_previous, needed_bytes)
        if due and kind == "kill-after-last" and path.name == checkpoint.LAST:
            os.kill(os.getpid(), signal.SIGKILL)
        return done

    checkpoint.write_atomic = write_atomic


if __name__ == "__main__":
    torch.set_num_threads(1)
    inject(sys.argv[1])
    sys.argv = ["src.run", *sys.argv[2:]]
    runpy.run_module("src.run", run_name="__main__", alter_sys=True)
