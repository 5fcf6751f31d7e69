"""Where a study lives, shared by every worker: a SQLite file (one machine), a database server
(``postgresql://...``, ``mysql://...``: several machines), or ``journal:PATH``, Optuna's journal file, for a shared
file system where SQLite's locking is unreliable (NFS). Each is opened once before any trial, so that a URL that
cannot be opened fails first, naming the fix.

A database storage records a heartbeat of every running trial; a trial whose heartbeat stops (its worker died,
anywhere) is failed by the next worker that asks for a trial, and retried with the same params
(``RetryHeartbeatStaleTrialCallback``). Optuna's journal storage has no heartbeat: there only a dead worker on this
machine is noticed (``src.tune.worker.fail_lost_trials``, which also covers the database storages at once, without
waiting for the grace period).
"""
import contextlib
import warnings
from pathlib import Path
from typing import Iterator, Optional

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage

from src.preflight import unwritable

from .errors import BadSpace

HEARTBEAT_S = 60  # a running trial's heartbeat, written by a thread of its worker
GRACE_S = 300  # a trial with no heartbeat for this long is failed and retried (its worker is gone)
MAX_RETRIES = 3  # a trial lost this many times is not retried again
SQLITE_TIMEOUT_S = 120  # how long a SQLite write waits for another worker's lock before "database is locked"


@contextlib.contextmanager
def experimental() -> Iterator[None]:
    """Optuna's heartbeat, its check and its retry are marked experimental: used as documented, without the warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield


with experimental():
    RETRY = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)
JOURNAL = "journal:"
FIX = ("give a storage Optuna can open: sqlite:///PATH (one machine), postgresql://USER:PASSWORD@HOST/DB "
       "(several), or journal:PATH (a shared file system)")


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """The storage at ``url``, created where it does not exist (a SQLite or journal file's folder too)."""
    try:
        if url.startswith(JOURNAL):
            path = Path(url[len(JOURNAL):]).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        engine_kwargs = {}
        if url.startswith("sqlite:///"):
            path = sqlite_path(url)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
        with experimental():
            return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S,
                              grace_period=GRACE_S, heartbeat_stale_trial_callback=RETRY)
    except Exception as error:  # noqa: BLE001 - SQLAlchemy's, the driver's and the file system's errors alike
        first = " ".join(str(error).split("\n")[0].split()) or type(error).__name__
        raise BadSpace(f"storage {url} cannot be opened ({type(error).__name__}: {first}): {FIX}") from error


def check_storage(url: str) -> None:
    """What ``open_storage`` needs, without writing anything (``--dry-run``): a SQLite or journal file's folder can be
    made and written; a server is opened."""
    path = Path(url[len(JOURNAL):]).expanduser() if url.startswith(JOURNAL) else (
        sqlite_path(url) if url.startswith("sqlite:///") else None)
    if path is None and not url.startswith("sqlite:"):
        open_storage(url)
        return
    problem = unwritable(path.absolute().parent) if path is not None else None
    if problem:
        raise BadSpace(f"storage {url} cannot be opened ({problem}): {FIX}")


def sqlite_path(url: str) -> Optional[Path]:
    """The file of ``sqlite:///PATH`` (relative) or ``sqlite:////PATH`` (absolute); None for an in-memory one."""
    rest = url[len("sqlite:///"):].split("?")[0]
    return None if rest in ("", ":memory:") else Path(rest)


def open_study(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    """The study ``name``, created where it does not exist (by whichever worker comes first); always maximised."""
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True)
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise BadSpace(f"study {name} in this storage minimises: it was made by something else; give another "
                       f"storage or out")
    return study
