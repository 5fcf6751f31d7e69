"""Resume and idempotent sweeps: what the loop calls to save, restore, skip or stop a run.

A checkpoint holds model, optimizer, scheduler, EMA, AMP scaler, ``TrainState``, RNG states (python, numpy,
torch, the train loader's generator), the position inside the epoch, the W&B run id and the config hash.
Mid-epoch positions (a SIGTERM) are resumed by restoring the loader's generator as it was when the epoch
started and skipping the batches already trained on, so the data order is the uninterrupted one.
"""
import logging
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch

from . import checkpoint as ckpt
from .results import RESULTS_FILE, config_hash, read_results
from .signals import StopFlag
from .state import TrainState

log = logging.getLogger(__name__)

# Keys that say how to run, not what to train: they never change a job's identity.
NON_IDENTITY_KEYS = ("force", "resume", "threads", "progress", "save_checkpoints", "ckpt_every_steps")


def identity_hash(config: Dict[str, Any]) -> str:
    """The config hash without the ``train`` keys that say how to run (force, resume, threads, ...)."""
    train = {k: v for k, v in config.get("train", {}).items() if k not in NON_IDENTITY_KEYS}
    return config_hash({**config, "train": train})


class AlreadyCompleted(Exception):
    """The run dir already holds a completed result for this exact config: nothing to do."""


def check_run_dir(run_dir: Path, config: Dict[str, Any], force: bool) -> Optional[Dict[str, Any]]:
    """Decides what to do with an existing ``results.json``: returns it (to resume or retry), None when there
    is none, raises ``AlreadyCompleted`` to skip a finished job, and ``ValueError`` when it belongs to another
    config (two jobs sharing one folder would overwrite each other's checkpoints)."""
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        return None
    try:
        previous = read_results(run_dir)
    except ValueError as error:
        log.warning("%s is unreadable (%s); starting the job over", path, error)
        return None
    same_config = identity_hash(previous.get("config", {})) == identity_hash(config)
    if not same_config and not force:
        raise ValueError(f"{path} holds results of another config (overrides {previous.get('overrides')}); "
                         f"use another output dir (hydra.run.dir / hydra.sweep.dir), delete that folder, "
                         f"or pass train.force=true to overwrite it")
    if previous.get("status") == "completed" and same_config and not force:
        raise AlreadyCompleted(f"{path} is already completed for this config: skipped (train.force=true re-runs)")
    if force:  # a forced run starts from scratch: another config's or a finished run's checkpoints must not load
        for name in (ckpt.LAST, ckpt.PREVIOUS, ckpt.BEST):
            (Path(run_dir) / name).unlink(missing_ok=True)
        log.info("train.force=true: running the job in %s from scratch", run_dir)
        return None
    return previous


def find_checkpoint(resume: str, run_dir: Path) -> Optional[Dict[str, Any]]:
    """``train.resume``: ``never`` -> None, ``auto`` -> the run dir's newest good checkpoint (or None),
    anything else is a path that must exist."""
    if resume == "never":
        return None
    if resume == "auto":
        return ckpt.load_latest(run_dir)
    checkpoint = ckpt.load(resume)
    checkpoint["path"] = str(resume)
    return checkpoint


class ResumableLoader:
    """Wraps the train loader: checks the stop flag before each batch, remembers where the epoch is (so a
    checkpoint can be written mid-epoch), and skips the first ``skip`` batches of a resumed epoch."""

    def __init__(self, loader, stop: StopFlag):
        self.loader, self.stop = loader, stop
        self.epoch_generator_state: Optional[torch.Tensor] = None
        self.done = 0  # batches handed out (and so fully trained on, when the next one is asked for)
        self.skip = 0
        self.resumed = False  # the next epoch restarts mid-way: restore the order it had
        self.rng_after_skip: Optional[Dict[str, Any]] = None  # RNG as it was at the stop, for after the skip
        self.between_steps: Optional[Callable[[], None]] = None  # called once a step is done (periodic saves)

    def __len__(self) -> int:
        return len(self.loader) - self.skip

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def __iter__(self):
        generator = self.loader.generator
        if self.resumed:
            generator.set_state(self.epoch_generator_state)  # the order this epoch had before the stop
            self.resumed = False
        elif generator is not None:
            self.epoch_generator_state = generator.get_state()
        skip, self.skip = self.skip, 0
        self.done = 0
        for index, batch in enumerate(self.loader):
            if index < skip:
                self.done += 1
                continue
            if self.rng_after_skip is not None:  # loading skipped batches may draw (augmentation): undo that
                ckpt.restore_rng(self.rng_after_skip)
                self.rng_after_skip = None
            if self.done > skip and self.between_steps is not None:
                self.between_steps()
            self.stop.check()
            self.done += 1
            yield batch


def checkpoint_payload(run, state: TrainState, loader: ResumableLoader, mid_epoch: bool, wandb_id: Optional[str],
                       config_identity: str) -> Dict[str, Any]:
    return {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "ema": run.ema.module.state_dict() if run.ema is not None else None,
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "state": state.to_dict(),
        "rng": ckpt.capture_rng({"train": run.data.train_loader.generator}),
        # mid-epoch: resume epoch ``state.epoch`` after ``batches_done`` batches, in the same data order
        "batches_done": loader.done if mid_epoch else 0,
        "epoch_generator": loader.epoch_generator_state if mid_epoch else None,
        "wandb_run_id": wandb_id,
        "config_hash": config_identity,
    }


def save(run_dir: Path, payload: Dict[str, Any], best: bool) -> None:
    run_dir = Path(run_dir)
    ckpt.save_atomic(payload, run_dir / ckpt.LAST, keep_previous=run_dir / ckpt.PREVIOUS)
    if best:
        ckpt.save_atomic(payload, run_dir / ckpt.BEST)


def restore(run, checkpoint: Dict[str, Any], loader: ResumableLoader, config_identity: str) -> TrainState:
    """Puts ``run`` back where the checkpoint left it; returns its ``TrainState``."""
    if checkpoint.get("config_hash") not in (None, config_identity):
        raise ValueError(f"checkpoint {checkpoint.get('path')} was written for another config: "
                         f"set train.resume=never or use another output dir")
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scheduler.load_state_dict(checkpoint["scheduler"])
    if run.ema is not None and checkpoint.get("ema") is not None:
        run.ema.module.load_state_dict(checkpoint["ema"])
    if run.scaler is not None and checkpoint.get("scaler") is not None:
        run.scaler.load_state_dict(checkpoint["scaler"])
    ckpt.restore_rng(checkpoint["rng"], {"train": run.data.train_loader.generator})
    if checkpoint.get("epoch_generator") is not None:
        loader.skip, loader.resumed = checkpoint["batches_done"], True
        loader.rng_after_skip = checkpoint["rng"]
        loader.epoch_generator_state = checkpoint["epoch_generator"]
    state = TrainState.from_dict(checkpoint["state"])
    log.info("resumed from %s: epoch %d, step %d", checkpoint.get("path"), state.epoch, state.step)
    return state
