"""How the run dir's files are written: atomically (a reader never sees half a file, a kill never loses the
previous one), with a disk reserve given back when the disk fills so that the failure itself can still be recorded,
and by rank 0 alone under DDP."""
import errno
import functools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, List, Optional

# the files of a run dir written through ``write_atomic``: their temp files are ``.NAME.*.tmp``
KNOWN_FILES = ("results", "val_predictions", "metrics", "last", "best")
RESERVE_FILE = ".disk_reserve"  # freed when the disk fills, so that the failure itself can still be recorded
RESERVE_BYTES = 1 << 20
TEMP_SUFFIX = ".tmp"


class DiskFull(OSError):
    """No space left: names the folder, what the write needed and what is free."""


def disk_full(folder: Path, needed_bytes: Optional[int], error: BaseException) -> DiskFull:
    free = shutil.disk_usage(folder).free if folder.exists() else 0
    needed = f"about {needed_bytes / 2**20:.1f} MB needed, " if needed_bytes else ""
    return DiskFull(errno.ENOSPC, f"disk full at {folder} ({needed}{free / 2**20:.1f} MB free): free space there "
                                  f"or point hydra.run.dir / hydra.sweep.dir elsewhere, then run the same command "
                                  f"again to resume ({type(error).__name__}: {str(error).strip()[:200]})")


def is_disk_full(error: BaseException, folder: Path, needed_bytes: Optional[int]) -> bool:
    """ENOSPC, or torch.save's C++ writer failing (a RuntimeError, "unexpected pos") on a disk with less free
    space than the write needed."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(error, RuntimeError) and folder.exists():
        return shutil.disk_usage(folder).free < max(needed_bytes or 0, 1 << 16)
    return False


@functools.lru_cache(maxsize=None)
def file_mode() -> int:
    """What ``open`` would give a new file under the umask (mkstemp's files are 0600). Read once a process: reading
    it means setting it, and another thread creating a file in between would get the wrong mode."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: Path, write: Callable[[Any], Any], keep_previous: Optional[Path] = None,
                 needed_bytes: Optional[int] = None) -> Path:
    """``write(file)`` into a temp file in ``path``'s folder, fsync, then rename it over ``path``: a reader never
    sees half a file, and a failure (disk full, a kill) before the rename leaves ``path`` as it was and removes
    the temp file (a kill leaves it for ``remove_temp_files``). With ``keep_previous``, the current ``path`` is
    moved there just before the rename. A full disk raises ``DiskFull`` naming the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_path = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        os.fchmod(handle, file_mode())
        with os.fdopen(handle, "wb") as temp:
            write(temp)
            temp.flush()
            os.fsync(temp.fileno())
        if keep_previous is not None:
            try:  # no check-then-rename: another writer may have moved it in between
                os.replace(path, keep_previous)  # last.pt -> last.prev.pt, then the new one becomes last.pt
            except FileNotFoundError:
                pass
        os.replace(temp_path, path)
        _fsync_dir(path.parent)
    except BaseException as error:
        Path(temp_path).unlink(missing_ok=True)
        if is_disk_full(error, path.parent, needed_bytes):
            raise disk_full(path.parent, needed_bytes, error) from error
        raise
    return path


def remove_temp_files(run_dir: Path) -> List[Path]:
    """The temp files of writes a kill interrupted (``.last.pt.*.tmp`` etc.); call with the run dir's lock held."""
    removed = []
    for temp in Path(run_dir).glob(f".*{TEMP_SUFFIX}"):
        if temp.is_file() and temp.name.split(".")[1] in KNOWN_FILES:
            temp.unlink(missing_ok=True)
            removed.append(temp)
    return removed


def reserve_space(run_dir: Path) -> None:
    """Sets aside ``RESERVE_BYTES`` in the run dir, given back by ``release_space`` when the disk fills."""
    path = Path(run_dir) / RESERVE_FILE
    try:
        if not path.is_file() or path.stat().st_size < RESERVE_BYTES:
            with open(path, "wb") as file:
                file.write(bytes(RESERVE_BYTES))  # real blocks, not a sparse file: freeing them frees space
                file.flush()
                os.fsync(file.fileno())
    except OSError:
        path.unlink(missing_ok=True)  # already full: nothing to set aside; the next start records what happened


def release_space(run_dir: Path) -> bool:
    path = Path(run_dir) / RESERVE_FILE
    if not path.is_file():
        return False
    path.unlink()
    return True


def _fsync_dir(folder: Path) -> None:
    """Makes the rename itself durable."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not every platform can open a folder
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_rank_zero() -> bool:
    """DDP (torchrun sets RANK): only rank 0 writes a run's record files."""
    return int(os.environ.get("RANK", 0)) == 0
