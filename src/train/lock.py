"""One process per run dir: an exclusive ``flock`` on ``RUN_DIR/.lock``, held for the job's life.

Two sweeps into one folder (or two ``make run`` started together) would otherwise run every job twice, each
writer moving the other's ``last.pt``. The kernel drops a ``flock`` when its process dies however it dies, so the
lock of a killed job is free at once: no stale lock to break by hand. The file itself keeps who holds it (pid,
host, start) for the message of a second process; a launch that ended leaving ``results.json`` at ``running``
(a kill, or a disk too full to record the failure) is reported by the next one.
"""
import fcntl
import json
import logging
import os
import shutil
import socket
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from .files import file_mode, release_space, remove_temp_files, reserve_space
from .record import now_iso
from .record_io import read_results

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"


class RunDirBusy(Exception):
    """Another live process holds the run dir; the message names it."""


class RunDirLock:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: Optional[int] = None

    def acquire(self, wait: bool = False) -> Optional[Dict[str, Any]]:
        """Takes the lock, or raises ``RunDirBusy`` (``wait``: blocks until the holder lets go). Returns the
        previous holder, if any ("released": False when it died holding the lock)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, file_mode())
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = describe(read_holder(fd))
                if not wait:
                    raise RunDirBusy(f"{self.path.parent} is in use by {holder}: skipped here (that process runs "
                                     f"it; train.on_busy=wait waits for it instead)") from None
                log.info("waiting for %s, which holds %s", holder, self.path.parent)
                fcntl.flock(fd, fcntl.LOCK_EX)
            previous = read_holder(fd)
            write_holder(fd, {"pid": os.getpid(), "host": socket.gethostname(), "started_at": now_iso(),
                              "released": False})
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return previous

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            holder = read_holder(self.fd) or {}
            write_holder(self.fd, {**holder, "released": True, "released_at": now_iso()})
        except OSError:  # a full disk: the next launch reports this one as having died holding the lock
            pass
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "RunDirLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def read_holder(fd: int) -> Optional[Dict[str, Any]]:
    try:
        text = os.pread(fd, 4096, 0).decode()
        return json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None


HOLDER_BYTES = 512


def write_holder(fd: int, holder: Dict[str, Any]) -> None:
    """Always the same ``HOLDER_BYTES`` (padded JSON), written over the old ones: the release still lands on a
    disk too full for a new block."""
    data = json.dumps(holder).ljust(HOLDER_BYTES - 1)[: HOLDER_BYTES - 1] + "\n"
    os.pwrite(fd, data.encode(), 0)


def describe(holder: Optional[Dict[str, Any]]) -> str:
    if not holder:
        return "another process"
    return f"pid {holder.get('pid')} on host {holder.get('host')} (since {holder.get('started_at')})"


# -- a job's claim on its run dir: the lock, and the housekeeping only its holder may do ----------------------
def claim_run_dir(run_dir: Path, wait: bool) -> Tuple[Optional[RunDirLock], Optional[str]]:
    """(the lock, or None when another live process holds the run dir: said why, skip the job; a note on the
    previous launch when it died holding the lock). Rank 0 takes the lock and every rank follows its answer.
    With the lock held, the temp files of interrupted writes are removed and ``RESERVE_BYTES`` set aside."""
    from . import distributed

    lock, busy, lost = RunDirLock(run_dir), None, None
    if distributed.is_main():
        try:
            previous = lock.acquire(wait=wait)
        except RunDirBusy as error:
            busy = str(error)
        else:
            if previous and last_status(run_dir) == "running":  # it ended without a word: no live holder
                free_mb = shutil.disk_usage(run_dir).free / 2**20
                lost = (f"the launch by {describe(previous)} ended without recording how: killed, or its disk was "
                        f"full ({free_mb:.0f} MB free at {run_dir} now)")
            for temp in remove_temp_files(run_dir):
                log.info("removed %s, left by an interrupted write", temp.name)
            reserve_space(run_dir)
    busy = distributed.rank0_says(busy)
    if busy:
        log.warning("%s", busy)
        return None, None
    return lock, lost


def last_status(run_dir: Path) -> Optional[str]:
    try:
        return read_results(run_dir).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def release_run_dir(lock: RunDirLock, run_dir: Path) -> None:
    if lock.fd is not None:  # rank 0, the holder
        release_space(run_dir)
        lock.release()
