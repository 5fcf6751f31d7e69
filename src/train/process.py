"""The process a job runs in: a clean state for every job, torch's threads, peak memory, and graceful stop signals.

Every job of a sweep starts from the same process state, whichever process runs it and whatever ran there before.
The basic launcher runs all the jobs of a sweep in the Hydra process, and hydra-joblib-launcher
(``hydra/launcher=parallel``) reuses each worker process for several jobs, so what one job leaves in the process
reaches the next: torch's thread count (``train.threads=null`` must mean the process's default, not the last
job's), W&B's current run (a second ``wandb.init`` returns it unless it was finished), the SIGINT/SIGTERM handlers
(``StopFlag``), torch.compile's caches (after 8 recompilations of one function it falls back to eager), the
peak-memory counters that ``results.json`` reports, and the warnings already shown once. The RNG states are
seeded by every job itself (``src.train.loop.build_run``).

Graceful stop: SIGTERM (what SLURM sends before preemption) and SIGINT set a flag; the loop reads it between
steps, saves a checkpoint and exits with status ``interrupted``. A second signal stops at once.
"""
import contextlib
import logging
import resource
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Iterator, Optional, Union

import torch

from .determinism import current_flags, restore_flags

log = logging.getLogger(__name__)
DEFAULT_THREADS = torch.get_num_threads()  # the process's own default, before any job sets another
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def set_threads(threads: Optional[int]) -> None:
    """``train.threads``, or the process's default when null (a joblib worker's is cores // n_jobs: loky sets
    OMP_NUM_THREADS and MKL_NUM_THREADS so for the workers it starts, unless the environment already does)."""
    torch.set_num_threads(threads or DEFAULT_THREADS)


# -- peak memory ---------------------------------------------------------------------------------------------
def peak_memory_mb(device: Union[torch.device, str]) -> float:
    """Peak GPU memory allocated by torch on CUDA; on the CPU the process's peak resident set size (MiB), since
    the last ``reset_peak_memory``."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def reset_peak_memory() -> None:
    """Peak memory from now on: CUDA's counters, and on Linux the process's peak resident set size
    (``/proc/self/clear_refs``, which ``getrusage`` and ``VmHWM`` read)."""
    if torch.cuda.is_initialized():
        for device in range(torch.cuda.device_count()):
            torch.cuda.reset_peak_memory_stats(device)
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


# -- one job, isolated ---------------------------------------------------------------------------------------
def finish_leftover_wandb_run() -> None:
    """A W&B run an earlier job left open (it failed before finishing it) is finished as failed."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        log.warning("finishing W&B run %s left open by an earlier job in this process", wandb.run.id)
        wandb.run.finish(exit_code=1)


def reset_compile_caches() -> None:
    if "torch._dynamo" in sys.modules:  # only where an earlier job compiled: importing dynamo takes seconds
        torch._dynamo.reset()


@contextlib.contextmanager
def isolated_job() -> Iterator[None]:
    """Clears what earlier jobs left, and restores the signal handlers and warning filters the job found."""
    finish_leftover_wandb_run()
    reset_compile_caches()
    reset_peak_memory()
    in_main_thread = threading.current_thread() is threading.main_thread()
    handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} if in_main_thread else {}
    flags = current_flags()  # train.deterministic's switches: a deterministic job leaves the next one as it was
    try:
        with warnings.catch_warnings():  # also forgets which warnings were shown: this job shows its own
            yield
    finally:
        restore_flags(flags)
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)


# -- graceful stop -------------------------------------------------------------------------------------------
class StopFlag:
    """Installs handlers for SIGTERM/SIGINT and SIGUSR2 (main thread only) and restores the old ones on ``close``.
    SIGUSR2 is what submitit has SLURM send ``signal_delay_s`` before the time limit; SIGTERM, a preemption or
    ``scontrol requeue``."""

    def __init__(self, signals=(signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)):
        self.signal_name: Optional[str] = None
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in signals:
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.signal_name is not None:  # the second signal: the user really wants out
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        log.warning("%s received: stopping after this step and saving a checkpoint", self.signal_name)

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def close(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
