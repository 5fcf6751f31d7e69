"""Checkpoints that survive crashes: atomic writes, ``weights_only`` loads, a fallback to the previous one.

``last.pt`` is written at the end of every epoch; the one it replaces is kept as ``last.prev.pt``, so a
corrupt or truncated ``last.pt`` (a crash inside the filesystem, a bad copy) falls back to the epoch before.
``best.pt`` is written on a better top-1. Everything in a checkpoint is tensors, numbers, strings, lists and
dicts, so ``torch.load(weights_only=True)`` reads it: loading a checkpoint never runs code from it.
"""
import logging
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import torch

log = logging.getLogger(__name__)

LAST, PREVIOUS, BEST = "last.pt", "last.prev.pt", "best.pt"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read; the message names the file."""


def save_atomic(obj: Dict[str, Any], path: Union[str, Path], keep_previous: Optional[Path] = None) -> Path:
    """Writes ``obj`` to a temp file in ``path``'s folder, fsyncs it, then renames it over ``path``.

    Any failure (disk full, a kill) before the rename leaves ``path`` as it was and removes the temp file.
    With ``keep_previous``, the current ``path`` is first hard-linked (or copied) there.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_path = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as temp:
            torch.save(obj, temp)
            temp.flush()
            os.fsync(temp.fileno())
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)  # last.pt -> last.prev.pt, then the new one becomes last.pt
        os.replace(temp_path, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(temp_path).unlink(missing_ok=True)
        raise
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not every platform can open a folder
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load(path: Union[str, Path]) -> Dict[str, Any]:
    """Reads a checkpoint with ``weights_only=True``; raises ``CheckpointError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: check the path given to train.resume")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - every unreadable file gets the same clear error
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(error).__name__}: {error}); "
                              f"delete it or set train.resume=never to start over") from error
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} is not a checkpoint of this harness (no 'model' entry)")
    return checkpoint


def load_latest(run_dir: Union[str, Path]) -> Optional[Dict[str, Any]]:
    """The newest readable checkpoint in ``run_dir``: ``last.pt``, else ``last.prev.pt``; None when neither
    exists. A corrupt ``last.pt`` with no readable fallback raises ``CheckpointError``."""
    run_dir = Path(run_dir)
    candidates = [run_dir / LAST, run_dir / PREVIOUS]
    errors = []
    for path in candidates:
        if not path.exists():
            continue
        try:
            checkpoint = load(path)
        except CheckpointError as error:
            log.warning("%s; trying the previous checkpoint", error)
            errors.append(str(error))
            continue
        checkpoint["path"] = str(path)
        return checkpoint
    if errors:
        raise CheckpointError("; ".join(errors))
    return None


# -- RNG states as tensors and numbers (weights_only can load those) -------------------------------------------
def capture_rng(generators: Optional[Dict[str, torch.Generator]] = None) -> Dict[str, Any]:
    version, state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    rng = {"python": {"version": version, "state": torch.tensor(state, dtype=torch.int64), "gauss": gauss},
           "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                     "has_gauss": int(has_gauss), "cached": float(cached)},
           "torch": torch.get_rng_state(),
           "generators": {key: gen.get_state() for key, gen in (generators or {}).items()}}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_rng(rng: Dict[str, Any], generators: Optional[Dict[str, torch.Generator]] = None) -> None:
    python = rng["python"]
    random.setstate((python["version"], tuple(int(x) for x in python["state"].tolist()), python["gauss"]))
    numpy = rng["numpy"]
    np.random.set_state((numpy["name"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached"]))
    torch.set_rng_state(rng["torch"])
    for key, gen in (generators or {}).items():
        if key in rng["generators"]:
            gen.set_state(rng["generators"][key])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
