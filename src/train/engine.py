"""One epoch of training and one evaluation pass (the DeiT split: engine vs. driver)."""
import logging
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from timm.utils import accuracy, dispatch_clip_grad
from tqdm import tqdm

log = logging.getLogger(__name__)


@dataclass
class StepContext:
    """What a training step needs besides the model and the batch."""
    optimizer: torch.optim.Optimizer
    scheduler: object  # timm scheduler (step_update per step when not stepping on epochs)
    criterion: Callable
    mixup: Optional[Callable]
    device: torch.device
    autocast_dtype: Optional[torch.dtype]  # None: full precision
    scaler: Optional[torch.amp.GradScaler]  # fp16 only
    clip_grad: Optional[float]
    ema: Optional[object]
    progress: bool  # tqdm bar, else a log line every log_every steps
    log_every: int
    on_step: Callable[[dict, int], None]  # (metrics, global step): per-step logging


def _autocast(ctx: StepContext):
    if ctx.autocast_dtype is None:
        return nullcontext()
    return torch.autocast(device_type=ctx.device.type, dtype=ctx.autocast_dtype)


def _backward_step(loss: torch.Tensor, model: torch.nn.Module, ctx: StepContext) -> None:
    ctx.optimizer.zero_grad(set_to_none=True)
    if ctx.scaler is not None:
        ctx.scaler.scale(loss).backward()
        if ctx.clip_grad:
            ctx.scaler.unscale_(ctx.optimizer)
            dispatch_clip_grad(model.parameters(), ctx.clip_grad)
        ctx.scaler.step(ctx.optimizer)
        ctx.scaler.update()
        return
    loss.backward()
    if ctx.clip_grad:
        dispatch_clip_grad(model.parameters(), ctx.clip_grad)
    ctx.optimizer.step()


def train_one_epoch(model: torch.nn.Module, loader, ctx: StepContext, epoch: int, start_step: int) -> dict:
    """Trains one pass over ``loader``; returns the mean loss, images/s and the global step reached."""
    model.train()
    step, loss_sum, seen, started = start_step, 0.0, 0, time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, dynamic_ncols=True, disable=not ctx.progress)
    for images, targets in bar:
        images = images.to(ctx.device, non_blocking=True)
        targets = targets.to(ctx.device, non_blocking=True)
        if ctx.mixup is not None:
            images, targets = ctx.mixup(images, targets)
        with _autocast(ctx):
            loss = ctx.criterion(model(images), targets)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch}, step {step}: lower the lr "
                                     f"(optim.lr / optim.base_lr), add warm-up (sched.warmup_epochs) or clip "
                                     f"gradients (optim.clip_grad=1.0)")
        _backward_step(loss, model, ctx)
        step += 1
        if ctx.ema is not None:
            ctx.ema.update(model, step=step)
        ctx.scheduler.step_update(num_updates=step)
        loss_sum += loss.item() * images.shape[0]
        seen += images.shape[0]
        lr = ctx.optimizer.param_groups[0]["lr"]
        speed = seen / max(time.perf_counter() - started, 1e-9)
        if ctx.progress:
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}", img_s=f"{speed:.0f}")
        elif step % ctx.log_every == 0:
            log.info("epoch %d step %d loss %.4f lr %.3e %.0f img/s", epoch, step, loss.item(), lr, speed)
        if step % ctx.log_every == 0:
            ctx.on_step({"train/loss": loss.item(), "train/lr": lr, "train/images_per_s": speed}, step)
    elapsed = time.perf_counter() - started
    if seen == 0:
        raise ValueError("the training loader gave no batches: lower train.batch_size or add data")
    return {"train_loss": loss_sum / seen, "images_per_s": seen / elapsed, "step": step}


def _branch_logits(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``[branches, B, classes]`` from the model under any torch.compile / DDP wrapper (eager: it is eval)."""
    core = model
    while not hasattr(core, "forward_branches"):
        core = core.module  # DistributedDataParallel; torch.compile's wrapper forwards attributes itself
    return core.forward_branches(images)


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, device: torch.device, autocast_dtype=None) -> dict:
    """Top-1 / top-5 (percent) and cross-entropy on the hard labels (timm's ``accuracy``) of the averaged
    logits, each branch head's top-1 alone (``top1_branch``, S first), and the per-image ``predictions``
    (``target``, ``pred``, ``pred_branch`` as int64 numpy arrays, in the loader's order)."""
    model.eval()
    loss_sum, top1_sum, top5_sum, seen = 0.0, 0.0, 0.0, 0
    targets_seen, preds, branch_preds = [], [], []
    context = (torch.autocast(device_type=device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext())
    for images, targets in loader:
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with context:
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
    if setting not in ("auto", "bar", "log"):
        raise ValueError(f"train.progress={setting!r}: pick auto, bar or log")
    return setting == "bar" or (setting == "auto" and sys.stderr.isatty())
