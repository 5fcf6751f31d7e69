"""One epoch of training and one evaluation pass (the DeiT split: engine vs. driver)."""
import contextlib
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from timm.utils import accuracy, dispatch_clip_grad
from tqdm import tqdm

from . import distributed

log = logging.getLogger(__name__)


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    """Mixed precision for training and evaluation alike; ``dtype`` None is full precision."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


# An epoch that waits for data longer than this share of its step time is loader-bound: the run log says so.
DATA_WAIT_WARNING = 0.10


@dataclass
class EpochMeter:
    """The epoch's training loss and speed as sums (loss x images, images), which add up across ranks, and the
    time its steps spent blocked on the loader against their whole time (``wait_s`` / ``step_s``), for the epoch
    and since the last logged step. Host clocks suffice even on CUDA: every step ends in the loss's ``.item()``,
    one sync, so a step's host time is its device time."""
    loss_sum: float = 0.0
    images: int = 0
    started: float = field(default_factory=time.perf_counter)
    wait_s: float = 0.0
    step_s: float = 0.0
    window_wait_s: float = 0.0
    window_step_s: float = 0.0

    def images_per_s(self) -> float:
        return self.images / max(time.perf_counter() - self.started, 1e-9)

    def add_step(self, waited: float, took: float) -> None:
        self.wait_s += waited
        self.step_s += took
        self.window_wait_s += waited
        self.window_step_s += took

    def data_wait_frac(self) -> float:
        return self.wait_s / self.step_s if self.step_s > 0 else 0.0

    def window_data_wait_frac(self) -> float:
        """The share since the last call (the logged step's window), then a new window starts."""
        share = self.window_wait_s / self.window_step_s if self.window_step_s > 0 else 0.0
        self.window_wait_s = self.window_step_s = 0.0
        return share


def micro_batches(images: torch.Tensor, targets: torch.Tensor, steps: int):
    """``steps`` micro-batches of this rank's batch (a short last batch gives what it has: fewer or smaller)."""
    return list(zip(torch.tensor_split(images, steps), torch.tensor_split(targets, steps)))


def train_step(run, images: torch.Tensor, targets: torch.Tensor, epoch: int, step: int) -> float:
    """One optimizer update on one batch, in ``run.grad_accum_steps`` micro-batches; returns the batch's mean
    loss on this rank.

    Each micro-batch's mean loss is weighed by its share of the global batch (its images x ranks / the images of
    all ranks), so that the gradients summed over the micro-batches and averaged by DDP over the ranks are those of
    the global batch's mean loss: batch B in k micro-batches of B/k, or over n ranks of B/n, gives the update of
    batch B in one (to float rounding), a short last batch included. DDP syncs gradients on the last micro-batch
    only (``no_sync``)."""
    if run.data.mixup is not None:  # on the whole batch, so that accumulation leaves its draws alone
        images, targets = run.data.mixup(images, targets)
    pieces = [piece for piece in micro_batches(images, targets, run.grad_accum_steps) if len(piece[0])]
    ranks, total = distributed.world_size(), distributed.global_count(images.shape[0], run.device)
    run.optimizer.zero_grad(set_to_none=True)
    loss_value = 0.0
    for index, (micro_images, micro_targets) in enumerate(pieces):
        with no_gradient_sync(run.train_model, skip=index < len(pieces) - 1):
            with autocast(run.device, run.amp_dtype):
                loss = run.criterion(run.train_model(micro_images), micro_targets)
            micro_loss = loss.item()  # one host sync per micro-batch
            if not math.isfinite(micro_loss):  # raised before the update: the last good checkpoint stays as it is
                raise FloatingPointError(
                    f"non-finite loss at {where(run, epoch, step + 1)} (loss {micro_loss}, lr "
                    f"{run.optimizer.param_groups[0]['lr']:.3g}): lower the lr (optim.lr / optim.base_lr), add "
                    f"warm-up (sched.warmup_epochs) or clip gradients (optim.clip_grad=1.0); the run resumes from its "
                    f"last good checkpoint when given the same command")
            # one piece on one rank: a factor of exactly 1, so the numbers are those of a plain step
            share = micro_images.shape[0] * ranks / total
            run.scaler.scale(loss * share if share != 1 else loss).backward()  # the scaler: a pass-through unless fp16
        loss_value = (micro_loss if len(pieces) == 1 else
                      loss_value + micro_loss * micro_images.shape[0] / images.shape[0])
    if run.clip_grad:
        run.scaler.unscale_(run.optimizer)
        dispatch_clip_grad(run.train_model.parameters(), run.clip_grad)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    return loss_value


def no_gradient_sync(model: torch.nn.Module, skip: bool):
    """DDP's ``no_sync`` on the micro-batches before the last (their gradients accumulate locally); otherwise
    nothing."""
    if skip and hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()


def where(run, epoch: int, step: int) -> str:
    """``epoch 2/12, step 140/1620``: the one way every message counts (from 1; the record's ``epoch`` is the
    0-based index of the same epoch, docs/results.md)."""
    return f"epoch {epoch + 1}/{run.num_epochs}, step {step}/{run.num_epochs * len(run.batches.loader)}"


def run_eta(run, step: int) -> str:
    """The run's remaining time at this launch's pace (its steps and evaluations so far)."""
    started, first_step = run.launch
    done = step - first_step
    if done <= 0:
        return "?"
    remaining = (time.perf_counter() - started) / done * (run.num_epochs * len(run.batches.loader) - step)
    minutes, seconds = divmod(int(remaining), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{seconds:02d}s"


def train_one_epoch(run, state, epoch: int, meter: EpochMeter, logger, progress: bool,
                    log_every: int) -> Iterator[None]:
    """Trains one pass over ``run.batches``, one optimizer step per batch, counting the global step in
    ``state.step`` (the only place that does). Yields after every step, so that the driver can save a
    checkpoint or stop between steps; ``meter`` sums the epoch's loss and images."""
    run.train_model.train()
    bar = tqdm(run.data.train_to_device(run.batches.epoch(epoch)), total=len(run.batches),
               desc=f"epoch {epoch + 1}/{run.num_epochs}", leave=False, dynamic_ncols=True, disable=not progress)
    batches = iter(bar)
    while True:
        fetch_started = time.perf_counter()
        batch = next(batches, None)  # the time blocked here is the step's data wait
        if batch is None:
            break
        waited = time.perf_counter() - fetch_started
        images, targets = batch
        images = images.to(run.device, non_blocking=True)
        targets = targets.to(run.device, non_blocking=True)
        loss = train_step(run, images, targets, epoch, state.step)
        state.step += 1
        if run.ema is not None:
            run.ema.update(run.train_model, step=state.step)
        run.scheduler.step_update(num_updates=state.step)
        meter.loss_sum += loss * images.shape[0]
        meter.images += images.shape[0]
        meter.add_step(waited, time.perf_counter() - fetch_started)
        lr, speed = run.optimizer.param_groups[0]["lr"], meter.images_per_s()
        if progress:
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", img_s=f"{speed:.0f}")
        elif state.step % log_every == 0:
            log.info("%s: loss %.4f, lr %.3e, %.0f img/s, ETA %s", where(run, epoch, state.step), loss, lr, speed,
                     run_eta(run, state.step))
        if state.step % log_every == 0:
            logger.log_step({"train/loss": loss, "train/lr": lr, "train/images_per_s": speed,
                             "train/data_wait_frac": meter.window_data_wait_frac()}, state.step)
        yield
    if meter.images == 0:
        raise ValueError("the training loader gave no batches: lower train.batch_size or add data")


def _branch_logits(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``[branches, B, classes]`` from the model under any torch.compile / DDP wrapper (eager: it is eval)."""
    core = model
    while not hasattr(core, "forward_branches"):
        core = core.module  # DistributedDataParallel; torch.compile's wrapper forwards attributes itself
    return core.forward_branches(images)


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, device: torch.device, amp_dtype: Optional[torch.dtype]) -> dict:
    """Top-1 / top-5 (percent) and cross-entropy on the hard labels (timm's ``accuracy``) of the averaged
    logits, each branch head's top-1 alone (``top1_branch``, S first), and the per-image ``predictions``
    (``target``, ``pred``, ``pred_branch`` as int64 numpy arrays, in the loader's order)."""
    model.eval()
    loss_sum, top1_sum, top5_sum, seen = 0.0, 0.0, 0.0, 0
    targets_seen, preds, branch_preds = [], [], []
    for images, targets in loader:
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            branch_logits = _branch_logits(model, images)
        branch_logits = branch_logits.float()
        logits = branch_logits.mean(0)
        top1, top5 = accuracy(logits, targets, topk=(1, min(5, logits.shape[1])))
        count = images.shape[0]
        loss_sum += F.cross_entropy(logits, targets).item() * count
        top1_sum += top1.item() * count
        top5_sum += top5.item() * count
        seen += count
        targets_seen.append(targets.cpu())
        preds.append(logits.argmax(-1).cpu())
        branch_preds.append(branch_logits.argmax(-1).cpu())
    target = torch.cat(targets_seen)
    pred_branch = torch.cat(branch_preds, dim=1)
    top1_branch = [(row == target).double().mean().item() * 100 for row in pred_branch]
    predictions = {"target": target.long().numpy(), "pred": torch.cat(preds).long().numpy(),
                   "pred_branch": pred_branch.long().numpy()}
    return {"loss": loss_sum / seen, "top1": top1_sum / seen, "top5": top5_sum / seen,
            "top1_branch": top1_branch, "predictions": predictions}


def use_progress_bar(setting: str) -> bool:
    """``train.progress`` (its choices are the schema's): a bar, or log lines."""
    return setting == "bar" or (setting == "auto" and sys.stderr.isatty())
