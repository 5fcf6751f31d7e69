"""Checkpoints, resume and run state, in one place.

A checkpoint holds model, optimizer, scheduler, EMA, AMP scaler, ``TrainState``, RNG states (python, numpy,
torch, CUDA, the train loader's generator), the position inside the epoch, the W&B run id and the config
hash. ``last.pt`` is written at the end of every epoch (and every ``train.ckpt_every_steps`` steps, and on a
stop signal); the one it replaces is kept as ``last.prev.pt``, so a corrupt or truncated ``last.pt`` falls
back to the one before. ``best.pt`` is written on a better top-1. Everything in a checkpoint is tensors,
numbers, strings, lists and dicts, so ``torch.load(weights_only=True)`` reads it: loading never runs code.

A mid-epoch resume restores the loader's generator as it was when the epoch started and skips the batches
already trained on, so the data order is the uninterrupted one.
"""
import hashlib
import logging
import random
import re
import zipfile
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

import numpy as np
import torch
from timm.utils import random_seed

from src.data import set_epoch
from src.identity import checkpoint_matches, same_job

from . import distributed
from .files import write_atomic
from .record_io import RESULTS_FILE, read_results

log = logging.getLogger(__name__)

LAST, PREVIOUS, BEST = "last.pt", "last.prev.pt", "best.pt"


@dataclass
class TrainState:
    """A run's progress, as plain data."""
    epoch: int = 0  # the epoch being run (the next one, between epochs)
    step: int = 0  # optimizer updates so far; ``engine.train_one_epoch`` is the only place that counts them
    best_top1: float = -1.0
    best_top5: float = -1.0
    best_epoch: Optional[int] = None
    best_top1_branch: Optional[List[float]] = None  # each branch head alone at the best epoch, S first
    history: List[Dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0  # wall time of all launches up to this checkpoint (wall_time_s, metrics.csv's time_s)
    start: Optional[Dict[str, Any]] = None  # started from weights (model.pretrained): them, and their evaluation
    best_selection_top1: float = -1.0  # with data.selection: what chose the best epoch

    def record(self, row: Dict[str, Any]) -> bool:
        """Appends an epoch's row; returns True when it is the best so far: the best selection top-1 where the run
        has a selection split (``data.selection``), else the best top-1."""
        self.history.append(row)
        self.epoch = row["epoch"] + 1
        if "selection_top1" in row:
            if row["selection_top1"] <= self.best_selection_top1:
                return False
            self.best_selection_top1 = row["selection_top1"]
            self.best_top1, self.best_top5, self.best_epoch = row["top1"], row["top5"], row["epoch"]
            self.best_top1_branch = row.get("top1_branch")
            return True
        if row["top1"] > self.best_top1:
            self.best_top1, self.best_top5, self.best_epoch = row["top1"], row["top5"], row["epoch"]
            self.best_top1_branch = row.get("top1_branch")
            return True
        return False

    def best(self) -> Optional[Dict[str, Any]]:
        if self.best_epoch is None:
            return None
        return {"top1": self.best_top1, "top5": self.best_top5, "epoch": self.best_epoch,
                "top1_branch": self.best_top1_branch}


# -- the run dir: idempotent sweeps --------------------------------------------------------------------------
class AlreadyCompleted(Exception):
    """The run dir already holds a completed result for this exact config: nothing to do."""


def check_run_dir(run_dir: Path, config: Dict[str, Any], force: bool) -> Optional[Dict[str, Any]]:
    """Decides what to do with an existing ``results.json``: a job of the same config resumes or retries
    (returns the previous record), a finished one raises ``AlreadyCompleted`` (skip it), another config's raises
    ``ValueError`` (two jobs sharing one folder would overwrite each other's checkpoints); ``force`` deletes the
    checkpoints. An unreadable record, or a completed one without its history, is rebuilt by resuming from the
    run's checkpoint (every epoch's row is in it; a finished run's resume trains nothing), or re-run without one.
    Call with the run dir's lock held."""
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        return None
    try:
        previous = read_results(run_dir)
        if not isinstance(previous, dict):
            raise ValueError(f"a JSON {type(previous).__name__}, not a record")
    except ValueError as error:
        log.warning("%s is unreadable (%s): rebuilding it from the run's checkpoint, or running the job over "
                    "where there is none", path, error)
        return None
    same_config = same_job(previous.get("config") or {}, config)
    if not same_config and not force:
        raise ValueError(f"{path} holds results of another config (overrides {previous.get('overrides')}); "
                         f"use another output dir (hydra.run.dir / hydra.sweep.dir), delete that folder, "
                         f"or pass train.force=true to overwrite it")
    finished = previous.get("status") == "completed" and bool(previous.get("history"))
    if previous.get("status") == "completed" and not finished:
        log.warning("%s says completed but holds no history: rebuilding it from the run's checkpoint", path)
    if finished and same_config and not force:
        raise AlreadyCompleted(f"{path} is already completed for this config: skipped (train.force=true re-runs)")
    if force:  # a forced run starts from scratch: another config's or a finished run's checkpoints must not load
        for name in (LAST, PREVIOUS, BEST):
            (Path(run_dir) / name).unlink(missing_ok=True)
        log.info("train.force=true: running the job in %s from scratch", run_dir)
        return None
    return previous


# -- files ---------------------------------------------------------------------------------------------------
class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read; the message names the file."""


def load(path: Union[str, Path]) -> Dict[str, Any]:
    """Reads a checkpoint with ``weights_only=True``; raises ``CheckpointError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: check the path given to train.resume")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - every unreadable file gets a clear error naming it
        raise CheckpointError(unreadable_checkpoint(path, error)) from error
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} is not a checkpoint of this harness (no 'model' entry)")
    return checkpoint


def unreadable_checkpoint(path: Path, error: BaseException) -> str:
    """Why ``path`` cannot be loaded, in the user's terms (torch's own message advises weights_only=False, which
    would run whatever code the file holds)."""
    fix = "delete it or set train.resume=never to start over"
    if not zipfile.is_zipfile(path):
        return f"checkpoint {path} is not a PyTorch checkpoint (not a torch.save zip file: corrupt, truncated or " \
               f"another kind of file); {fix}"
    code = re.search(r"GLOBAL (\S+)", str(error))
    if code:
        return f"checkpoint {path} holds pickled code ({code.group(1)}), which loading would run: refused, it " \
               f"was not written by this harness (whose checkpoints hold tensors, numbers and strings only); {fix}"
    return f"checkpoint {path} is corrupt or truncated ({type(error).__name__}: {str(error).strip()[:300]}); {fix}"


def load_latest(run_dir: Union[str, Path]) -> Optional[Dict[str, Any]]:
    """The newest readable checkpoint in ``run_dir``: ``last.pt``, else ``last.prev.pt``; None when neither
    exists. A corrupt ``last.pt`` with no readable fallback raises ``CheckpointError``."""
    errors = []
    for path in (Path(run_dir) / LAST, Path(run_dir) / PREVIOUS):
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


def find_checkpoint(resume: str, run_dir: Path) -> Optional[Dict[str, Any]]:
    """``train.resume``: ``never`` -> None, ``auto`` -> the run dir's newest good checkpoint (or None),
    anything else is a path that must exist."""
    if resume == "never":
        return None
    if resume == "auto":
        return load_latest(run_dir)
    checkpoint = load(resume)
    checkpoint["path"] = str(resume)
    return checkpoint


# -- RNG states as tensors and numbers (weights_only can load those) -----------------------------------------
def capture_rng(generators: Optional[Dict[str, torch.Generator]] = None) -> Dict[str, Any]:
    version, state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    rng = {"python": {"version": version, "state": torch.tensor(state, dtype=torch.int64), "gauss": gauss},
           "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                     "has_gauss": int(has_gauss), "cached": float(cached)},
           "torch": torch.get_rng_state(),
           "generators": {key: gen.get_state() for key, gen in (generators or {}).items()}}
    if torch.cuda.is_available():  # this process's device only: a resume may see fewer GPUs, or another one
        rng["cuda"] = torch.cuda.get_rng_state()
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
        cuda = rng["cuda"]
        if isinstance(cuda, (list, tuple)):  # written before 2026-12: every visible GPU's state, this one's by index
            index = torch.cuda.current_device()
            if index >= len(cuda):
                log.warning("the checkpoint holds CUDA random states for %d GPU(s), none for GPU %d: its CUDA "
                            "stream starts from the run's seed instead", len(cuda), index)
                return
            cuda = cuda[index]
        torch.cuda.set_rng_state(cuda)


def rank_rng(checkpoint: Dict[str, Any], config: Dict[str, Any]) -> Dict[str, Any]:
    """This rank's random state in ``checkpoint``: rank 0's is ``rng``, the others' ``rank_rngs`` (gathered at
    the save). A checkpoint of another world size, or from before the ranks' states were kept, has none for a rank
    above 0: its streams restart from (seed, rank, step), distinct from every other rank's, and the run says so."""
    rank, world = distributed.rank(), distributed.world_size()
    if rank == 0:
        return checkpoint["rng"]
    others = checkpoint.get("rank_rngs") or []
    if len(others) == world - 1:
        return others[rank - 1]
    step = checkpoint["state"]["step"]
    log.warning("rank %d: the checkpoint holds random states for %d rank(s), this run has %d: rank %d's augmentation "
                "and drop-path streams restart from (seed, rank, step %d), not where the interrupted run left them",
                rank, len(others) + 1, world, rank, step)
    seed = distributed.stream_seed(hash_seed(config.get("seed", 0), step), rank)
    random_seed(seed)
    return {**capture_rng(), "generators": checkpoint["rng"].get("generators", {})}


def hash_seed(seed: int, step: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}/step{step}".encode(), digest_size=4).digest(), "little")


# -- the train loader, resumable mid-epoch -------------------------------------------------------------------
class ResumableBatches:
    """The train loader's batches one epoch at a time. Each epoch remembers the generator state its order was
    drawn from, so that a mid-epoch checkpoint can bring the same order back; a resumed epoch skips the
    batches it already trained on."""

    def __init__(self, loader):
        self.loader = loader
        self.epoch_order: Optional[torch.Tensor] = None  # the generator state the current epoch started from
        self.resume_point: Optional[Dict[str, Any]] = None  # {"order", "skip", "rng"} for the next epoch

    def __len__(self) -> int:
        """Batches left in the next (or current) epoch."""
        return len(self.loader) - (self.resume_point["skip"] if self.resume_point else 0)

    def epoch(self, epoch: int) -> Iterator:
        if hasattr(self.loader.sampler, "set_epoch"):  # DistributedSampler, repeated augmentation
            self.loader.sampler.set_epoch(epoch)
        set_epoch(self.loader.dataset, epoch)  # multiscale_digits: this epoch's renders, the same on a resume
        resume, self.resume_point = self.resume_point, None
        if resume is not None:
            self.loader.generator.set_state(resume["order"])
        self.epoch_order = self.loader.generator.get_state()
        batches = iter(self.loader)
        if resume is not None:
            for _ in range(resume["skip"]):
                next(batches)
            restore_rng(resume["rng"])  # loading the skipped batches may draw (augmentation): undo that
        yield from batches


# -- save and restore a run ----------------------------------------------------------------------------------
@dataclass
class Saver:
    """Where this run's checkpoints go, whether it writes any (rank 0 only), and the job they belong to
    (``src.identity.identity``, and the config itself: a new run started from them knows their fusion).
    ``gathers``: under DDP with checkpoints on, every rank calls ``save`` at the same step, and rank 0 keeps each
    rank's random state, so that each resumes its own streams."""
    run_dir: Path
    config_identity: str
    enabled: bool
    config: Optional[Dict[str, Any]] = None
    gathers: bool = False

    def save(self, run, state: TrainState, wandb_id: Optional[str], mid_epoch: bool, best: bool = False) -> None:
        rank_rngs = distributed.gather_to_all(capture_rng()) if self.gathers else None
        if not self.enabled:
            return
        # mid-epoch: resume epoch ``state.epoch`` after ``batches_done`` batches, in the same data order
        batches_done = state.step - state.epoch * len(run.batches.loader) if mid_epoch else 0
        payload = {
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "ema": run.ema.module.state_dict() if run.ema is not None else None,
            "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else None,
            "state": asdict(state),
            "rng": capture_rng({"train": run.batches.loader.generator}),
            "rank_rngs": rank_rngs[1:] if rank_rngs else None,  # ranks 1.. (``rank_rng``)
            "batches_done": batches_done,
            "epoch_generator": run.batches.epoch_order if mid_epoch else None,
            "wandb_run_id": wandb_id,
            "config_hash": self.config_identity,
            "config": self.config,
        }
        write = partial(torch.save, payload)  # atomic: a kill mid-write leaves the previous file whole
        size = payload_bytes(payload)
        if best:  # before last.pt, which commits the epoch: a kill in between redoes the epoch and this write
            write_atomic(Path(self.run_dir) / BEST, write, needed_bytes=size)
        write_atomic(Path(self.run_dir) / LAST, write, keep_previous=Path(self.run_dir) / PREVIOUS, needed_bytes=size)


def payload_bytes(value: Any) -> int:
    """The tensors' bytes in a checkpoint: about its size on disk."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(payload_bytes(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return sum(payload_bytes(item) for item in value)
    return 8


def restore(run, checkpoint: Dict[str, Any], config: Dict[str, Any]) -> TrainState:
    """Puts ``run`` back where the checkpoint left it; returns its ``TrainState``. ``config``: the resolved config."""
    if not checkpoint_matches(checkpoint.get("config_hash"), config):
        raise ValueError(f"checkpoint {checkpoint.get('path')} was written for another config: train.resume "
                         f"continues the same job; to start a new run from its weights give "
                         f"model.pretrained={checkpoint.get('path')} (with train.resume=auto or never), or use "
                         f"another output dir")
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scheduler.load_state_dict(checkpoint["scheduler"])
    if run.ema is not None and checkpoint.get("ema") is not None:
        run.ema.module.load_state_dict(checkpoint["ema"])
    if run.scaler.is_enabled() and checkpoint.get("scaler") is not None:
        run.scaler.load_state_dict(checkpoint["scaler"])
    rng = rank_rng(checkpoint, config)  # the loader's generator is rank 0's on every rank: the global batches
    restore_rng({**rng, "generators": checkpoint["rng"].get("generators", {})}, {"train": run.batches.loader.generator})
    if checkpoint.get("epoch_generator") is not None:
        run.batches.resume_point = {"order": checkpoint["epoch_generator"], "skip": checkpoint["batches_done"],
                                    "rng": rng}
    state = TrainState(**checkpoint["state"])
    log.info("resumed from %s: epoch %d, step %d", checkpoint.get("path"), state.epoch, state.step)
    return state
