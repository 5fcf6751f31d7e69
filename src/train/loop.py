"""The driver: build -> resume -> for each epoch: train, evaluate, save, log. Reads top to bottom."""
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, Optional, Tuple

import torch
from omegaconf import OmegaConf
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.utils import ModelEmaV3, random_seed

from src.data import Data, build_data, resolve_num_classes
from src.identity import identity
from src.models import VARIANTS, count_flops, count_params, fusion_modules

from . import checkpoint as ckpt
from . import distributed
from .build import (
    ARCHITECTURE_KEYS,
    build_optimizer,
    build_scheduler,
    build_started_model,
    input_size,
    model_summary,
    resolve_amp,
    resolve_device,
)
from .determinism import apply_determinism
from .engine import DATA_WAIT_WARNING, EpochMeter, evaluate, train_one_epoch, use_progress_bar, where
from .inputs import describe_inputs
from .loggers import CsvTrail, Loggers, TensorboardTrail, preset_tags
from .naming import arch_keys
from .process import StopFlag, peak_memory_mb, set_threads
from .provenance import provenance
from .record import (
    RunRecord,
    data_sizes,
    mark_completed,
    mark_interrupted,
    record_build,
    record_epoch,
    record_start,
    record_wandb,
)
from .record_io import write_predictions, write_results
from .wandb_logger import WandbLogger

log = logging.getLogger(__name__)


@dataclass
class Run:
    """Everything one run trains with; a checkpoint saves and restores it, besides the ``TrainState``."""
    model: torch.nn.Module
    train_model: torch.nn.Module  # ``model``, or its torch.compile / DDP wrapper
    data: Data
    batches: ckpt.ResumableBatches  # the train loader, resumable mid-epoch
    criterion: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    num_epochs: int
    ema: Optional[ModelEmaV3]
    scaler: torch.amp.GradScaler  # enabled for fp16 only
    device: torch.device
    amp_dtype: Optional[torch.dtype]  # None: full precision
    clip_grad: Optional[float]
    grad_accum_steps: int = 1  # micro-batches per optimizer step
    start: Optional[Dict[str, Any]] = None  # the weights it started from (model.pretrained); None: random init
    launch: Tuple[float, int] = (0.0, 0)  # (when this launch's training began, the step it began at): its ETA


def build_criterion(data_cfg, mixup) -> torch.nn.Module:
    if mixup is not None:
        return SoftTargetCrossEntropy()  # mixup already smooths the labels
    if data_cfg.smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=data_cfg.smoothing)
    return torch.nn.CrossEntropyLoss()


def measure_costs(model: torch.nn.Module) -> Dict[str, float]:
    flops = count_flops(model, (3, model.img_size, model.img_size), by_module=True)
    fusion_params = sum(count_params(module) for module in fusion_modules(model).values())
    return {"params_m": count_params(model) / 1e6, "gmacs": flops["total"],
            "fusion_params_m": fusion_params / 1e6, "fusion_gmacs": flops["fusion"]}


def build_run(cfg) -> Run:
    """Builds everything, checking every input on the way, so that bad input fails before any training."""
    random_seed(cfg.seed)  # python, numpy and torch
    set_threads(cfg.train.threads)
    device = resolve_device(cfg.train.device)
    apply_determinism(cfg.train.deterministic, device)  # before the first cuBLAS call
    amp_dtype = resolve_amp(cfg.train.amp, device)
    num_classes = resolve_num_classes(cfg.data)  # data.num_classes null: the data's own count
    with torch.random.fork_rng(devices=[]):  # the model draws its own init (src/models/init.py); what comes after
        model, start = build_started_model(cfg, num_classes)  # it (augmentation, drop path) then sees the same
        # stream whatever the model is
    if distributed.rank() > 0:  # every rank builds the same model, then draws its own augmentation and drop path
        random_seed(distributed.stream_seed(cfg.seed))
    image_size = input_size(cfg, model.img_size)
    accumulation = cfg.train.grad_accum_steps
    distributed.check_split(cfg.train.batch_size, accumulation)
    data = build_data(cfg.data, image_size, cfg.train.batch_size,
                      cfg.train.eval_batch_size or 2 * cfg.train.batch_size, cfg.seed, device=device)
    data.train_loader = distributed.shard_loader(data.train_loader, cfg.seed)  # torchrun: DDP
    model.to(device)
    optimizer = build_optimizer(cfg, model)
    scheduler, num_epochs = build_scheduler(cfg, optimizer, len(data.train_loader))
    return Run(model=model, train_model=compiled(distributed.wrap(model, device), cfg.train.compile),
               data=data, batches=ckpt.ResumableBatches(data.train_loader),
               criterion=build_criterion(cfg.data, data.mixup), optimizer=optimizer, scheduler=scheduler,
               num_epochs=num_epochs, ema=ModelEmaV3(model, decay=cfg.train.ema_decay) if cfg.train.ema else None,
               scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),
               device=device, amp_dtype=amp_dtype, clip_grad=cfg.optim.clip_grad, grad_accum_steps=accumulation,
               start=start)


def compiled(model: torch.nn.Module, compile_: bool) -> torch.nn.Module:
    """``train.compile``: torch.compile around DDP, not inside it, so that the compiled graph is split at DDP's
    gradient buckets and their all-reduce overlaps the backward (``DDPOptimizer``); static shapes, so that a short
    last batch compiles one more graph for its size instead of a slower dynamic-shape one for every batch."""
    return torch.compile(model, dynamic=False) if compile_ else model


def train(cfg, run_dir: Path, results: RunRecord, wandb_config: Dict[str, Any], group: Optional[str],
          name: str) -> RunRecord:
    """Trains ``cfg``, keeping ``results`` and ``run_dir/results.json`` up to date; returns ``results``."""
    started = time.perf_counter()
    run = build_run(cfg)
    record_build(results, model_summary(cfg, run.model), measure_costs(run.model), provenance(run.device),
                 data_sizes(run.data.num_train, run.data.num_val, run.data.val_units, run.data.num_selection),
                 run.data.class_names)
    config = OmegaConf.to_container(cfg, resolve=True)
    checkpoint = ckpt.find_checkpoint(cfg.train.resume, run_dir)
    state = ckpt.restore(run, checkpoint, config) if checkpoint else ckpt.TrainState()
    if checkpoint is None and run.start is not None:
        state.start = evaluate_start(run)
    record_start(results, state.start)
    earlier_s = state.elapsed_s  # the earlier launches' time: wall_time_s and time_s count across launches

    def elapsed() -> float:
        return earlier_s + time.perf_counter() - started

    if state.history:  # the record is rebuilt from the checkpoint, whatever results.json held before
        record_epoch(results, state.history, state.best(), elapsed(), peak_memory_mb(run.device))
    saver = ckpt.Saver(run_dir, identity(config), enabled=cfg.train.save_checkpoints and distributed.is_main(),
                       config=config, gathers=cfg.train.save_checkpoints and distributed.is_distributed())
    stop, exit_code, logger = StopFlag(), 1, None  # the flag before W&B's start, which can take a while
    try:  # whatever fails, the signal handlers and the W&B run are not left to the next job in this process
        logger = start_loggers(cfg, run_dir, results, state, {**wandb_config, **arch_keys(results["model"])},
                               group, name, checkpoint.get("wandb_run_id") if checkpoint else None,
                               len(run.batches.loader))
        record_wandb(results, logger.info)
        write_results(run_dir, results)
        log_start(cfg, run, results)
        progress, steps_per_epoch = use_progress_bar(cfg.train.progress), len(run.batches.loader)
        run.launch = (time.perf_counter(), state.step)
        loader_warned = False
        for epoch in range(state.epoch, run.num_epochs):
            epoch_started, lr, meter = time.perf_counter(), run.optimizer.param_groups[0]["lr"], EpochMeter()
            for _ in train_one_epoch(run, state, epoch, meter, logger, progress, cfg.logger.log_every_n_steps):
                stopping = distributed.any_rank(stop.requested)  # a signal on one rank stops all at this step
                if mid_epoch_save_due(cfg, state, stopping, steps_per_epoch):
                    meter.raise_if_non_finite(run, epoch)
                    state.elapsed_s = elapsed()
                    saver.save(run, state, logger.run_id, mid_epoch=True)
                    if stopping:
                        return interrupted(results, stop, run, epoch, state, elapsed(), logger)
            trained = distributed.reduce_sums({"loss_sum": meter.loss_total(), "images": meter.images,
                                               "images_per_s": meter.images_per_s(), "wait_s": meter.wait_s,
                                               "step_s": meter.step_s}, run.device)
            metrics = evaluate(run.train_model, run.data.val_to_device(run.data.val_loader), run.device,
                               run.amp_dtype)
            run.scheduler.step(epoch + 1)
            row = {"epoch": epoch, "train_loss": trained["loss_sum"] / trained["images"],
                   "val_loss": metrics["loss"], "top1": metrics["top1"], "top5": metrics["top5"],
                   "top1_branch": metrics["top1_branch"], "lr": lr,
                   "epoch_time_s": time.perf_counter() - epoch_started, "images_per_s": trained["images_per_s"],
                   "data_wait_frac": trained["wait_s"] / max(trained["step_s"], 1e-9)}
            loader_warned = warn_if_loader_bound(cfg, row, loader_warned)
            if run.data.selection_loader is not None:  # what choices are made on; top1 stays the test split's
                chosen_on = evaluate(run.train_model, run.data.val_to_device(run.data.selection_loader), run.device,
                                     run.amp_dtype)
                row["selection_top1"], row["selection_loss"] = chosen_on["top1"], chosen_on["loss"]
            if run.ema is not None:
                row["ema_top1"] = evaluate(run.ema.module, run.data.val_to_device(run.data.val_loader), run.device,
                                           run.amp_dtype)["top1"]
            is_best = state.record(row)
            # The order a kill at any point leaves consistent: predictions and best.pt, then last.pt, which
            # commits the epoch (a kill before it redoes the epoch and rewrites both), then the trail and the
            # record, which the next start rebuilds from last.pt
            write_predictions(run_dir, metrics["predictions"], run.data.val_sources)
            state.elapsed_s = elapsed()
            saver.save(run, state, logger.run_id, mid_epoch=False, best=is_best)
            log_epoch(logger, row, run.num_epochs, state.step)
            record_epoch(results, state.history, state.best(), elapsed(), peak_memory_mb(run.device))
            write_results(run_dir, results)
            if distributed.any_rank(stop.requested) and state.epoch < run.num_epochs:  # after the last step
                return interrupted(results, stop, run, state.epoch, state, elapsed(), logger)
        completed(results, state, logger, elapsed())
        exit_code = 0
    finally:
        stop.close()
        if logger is not None:
            logger.finish(exit_code)
    return results


def mid_epoch_save_due(cfg, state: ckpt.TrainState, stopping: bool, steps_per_epoch: int) -> bool:
    """On a stop signal, and every ``train.ckpt_every_steps`` steps; never after an epoch's last step, which
    the end-of-epoch save follows (every epoch is ``steps_per_epoch`` steps, so ``state.step`` says where)."""
    every = cfg.train.ckpt_every_steps
    periodic = bool(every) and state.step % every == 0
    return (stopping or periodic) and state.step % steps_per_epoch != 0


def start_loggers(cfg, run_dir: Path, results: RunRecord, state: ckpt.TrainState, wandb_config: Dict[str, Any],
                  group: Optional[str], name: str, wandb_run_id: Optional[str], steps_per_epoch: int) -> Loggers:
    """W&B (rank 0, ``logger=wandb``), ``metrics.csv`` (rank 0, always) and TensorBoard (``logger=tensorboard``)."""
    if not distributed.is_main():
        return Loggers(WandbLogger(SimpleNamespace(name="none"), run_dir, {}, None, name), [])
    job_type, tags = preset_tags(cfg.logger, results.get("choices") or {})
    wandb = WandbLogger(cfg.logger, run_dir, wandb_config, group, name, run_id=wandb_run_id, job_type=job_type,
                        tags=tags)
    # what collate --wandb needs to count each (config, seed) once and to list the swept keys
    # and the validation size, which the flags judge a run's noise by
    sizes = {f"data_sizes/{key}": value for key, value in (results.get("data_sizes") or {}).items()}
    wandb.summary({"config_hash": results.get("config_hash"), "overrides": results.get("overrides") or [], **sizes})
    epoch_rows = [((row["epoch"] + 1) * steps_per_epoch, epoch_metrics(row)) for row in state.history]
    trails = [CsvTrail(run_dir, results["model"]["num_branches"], state.step, state.epoch, epoch_rows,
                       state.elapsed_s)]
    if cfg.logger.name == "tensorboard":
        trails.append(TensorboardTrail(run_dir, state.step))
    return Loggers(wandb, trails)


def interrupted(results: RunRecord, stop: StopFlag, run: Run, epoch: int, state: ckpt.TrainState,
                wall_time_s: float, logger: Loggers) -> RunRecord:
    if stop.signal_name == "SIGTERM":  # preemption: a W&B sweep agent re-queues the run (it resumes last.pt)
        logger.mark_preempting()
    signal_name = stop.signal_name or "a stop signal to another rank"
    mark_interrupted(results, f"{signal_name} at {where(run, epoch, state.step)}: checkpoint saved, run the "
                     f"same command again to resume", wall_time_s)
    return results


def completed(results: RunRecord, state: ckpt.TrainState, logger: Loggers, wall_time_s: float) -> None:
    last = state.history[-1]
    mark_completed(results, last, state.best(), wall_time_s)
    selection = {"final/selection_top1": last["selection_top1"]} if "selection_top1" in last else {}
    logger.summary({**selection, "final/top1": last["top1"], "final/top5": last["top5"], "best/top1": state.best_top1,
                    **{f"final/top1_branch{i}": top1 for i, top1 in enumerate(last["top1_branch"])},
                    "params_m": results["params_m"], "gmacs": results["gmacs"],
                    "fusion_params_m": results["fusion_params_m"], "fusion_gmacs": results["fusion_gmacs"],
                    "images_per_s": mean_images_per_s(state.history), "wall_time_s": results["wall_time_s"],
                    "data_wait_frac": mean_of(state.history, "data_wait_frac"),
                    **{f"provenance/{key}": value for key, value in results["provenance"].items()}})


def mean_images_per_s(history) -> Optional[float]:
    speeds = [row["images_per_s"] for row in history if row.get("images_per_s")]
    return sum(speeds) / len(speeds) if speeds else None


def mean_of(history, key: str) -> Optional[float]:
    """The mean of ``key`` over the epochs that have it (None if none: a history from before it was recorded)."""
    values = [row[key] for row in history if row.get(key) is not None]
    return sum(values) / len(values) if values else None


def evaluate_start(run: Run) -> Dict[str, Any]:
    """The weights it starts from, evaluated before the first step (in a fork of the generators: the training
    draws are those of a run without this pass)."""
    with torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []):
        metrics = evaluate(run.train_model, run.data.val_to_device(run.data.val_loader), run.device, run.amp_dtype)
    log.info("before training: top-1 %.2f (branches %s), top-5 %.2f, val loss %.4f, from %s", metrics["top1"],
             "/".join(f"{top1:.1f}" for top1 in metrics["top1_branch"]), metrics["top5"], metrics["loss"],
             run.start["source"])
    return {**run.start, "top1": metrics["top1"], "top5": metrics["top5"], "loss": metrics["loss"],
            "top1_branch": metrics["top1_branch"]}


def log_start(cfg, run: Run, results: RunRecord) -> None:
    log.info("%s + %s on %s: %.2fM params, %.4f GMACs, %d train / %d val images, %d classes, %d epochs on %s",
             results["model"]["name"] + variant_note(cfg, run.model), cfg.fusion.name, cfg.data.name,
             results["params_m"], results["gmacs"], run.data.num_train, run.data.num_val, run.model.num_classes,
             run.num_epochs, run.device)
    log.info("%s", describe_inputs(cfg.data, run.model, run.data.train_loader.dataset))


def variant_note(cfg, model: torch.nn.Module) -> str:
    """`` (overridden: img_size 40)``: the architecture keys given on top of the variant's, so that the name does
    not claim the variant as registered."""
    changed = [key for key in ARCHITECTURE_KEYS if cfg.model[key] is not None
               and to_plain(cfg.model[key]) != to_plain(VARIANTS[cfg.model.name].get(key))]
    return f" (overridden: {', '.join(f'{key} {to_plain(cfg.model[key])}' for key in changed)})" if changed else ""


def to_plain(value):
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    return [to_plain(item) for item in value] if isinstance(value, (list, tuple)) else value


def warn_if_loader_bound(cfg, row: Dict[str, Any], warned: bool) -> bool:
    """Says once a launch (a sweep of many epochs would repeat it) that an epoch waited for data more than
    ``DATA_WAIT_WARNING`` of its step time; returns whether it has been said."""
    if warned or row["data_wait_frac"] <= DATA_WAIT_WARNING:
        return warned
    log.warning("epoch %d spent %.0f%% of its training steps waiting for data (over %.0f%%): the loader holds the "
                "model back; raise data.num_workers (now %s) where CPUs are free. Said once: every epoch's share is "
                "data_wait_frac in results.json", row["epoch"] + 1, 100 * row["data_wait_frac"],
                100 * DATA_WAIT_WARNING, cfg.data.num_workers)
    return True


def log_epoch(logger: Loggers, row: Dict[str, Any], num_epochs: int, step: int) -> None:
    selection = f"selection top-1 {row['selection_top1']:.2f}, " if "selection_top1" in row else ""
    log.info("epoch %d/%d: train loss %.4f, val loss %.4f, %stop-1 %.2f (branches %s), top-5 %.2f, %.1f s, "
             "%.0f img/s", row["epoch"] + 1, num_epochs, row["train_loss"], row["val_loss"], selection, row["top1"],
             "/".join(f"{top1:.1f}" for top1 in row["top1_branch"]), row["top5"], row["epoch_time_s"],
             row["images_per_s"])
    logger.log_step(epoch_metrics(row), step=step)  # epoch rows share the W&B history, at the global step


def epoch_metrics(row: Dict[str, Any]) -> Dict[str, Any]:
    """An epoch's row of the history as logged (W&B, metrics.csv, TensorBoard)."""
    metrics = {"epoch": row["epoch"], "val/loss": row["val_loss"], "val/top1": row["top1"],
               "val/top5": row["top5"], "train/epoch_loss": row["train_loss"],
               "train/epoch_time_s": row["epoch_time_s"], "train/epoch_images_per_s": row["images_per_s"],
               "train/epoch_data_wait_frac": row.get("data_wait_frac"),
               **{f"val/top1_branch{i}": top1 for i, top1 in enumerate(row["top1_branch"])}}
    if "ema_top1" in row:
        metrics["val/ema_top1"] = row["ema_top1"]
    if "selection_top1" in row:
        metrics["selection/top1"], metrics["selection/loss"] = row["selection_top1"], row["selection_loss"]
    return metrics
