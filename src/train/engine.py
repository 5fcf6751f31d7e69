"""One epoch of training and one evaluation pass (the DeiT split: engine vs. driver)."""
import contextlib
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

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
    and since the last logged step.

    Nothing here waits for the device: the loss sum stays a device tensor and a non-finite loss is noted on the
    device (``note_loss``), both read at the sync points (every logged step, before a save, at the epoch's end:
    ``raise_if_non_finite``). On the CPU a step's time is its host time; on CUDA the host runs ahead, so the data
    wait is timed on the device (``StepClock``)."""
    loss_sum: Optional[torch.Tensor] = None  # float64, on the device
    images: int = 0
    started: float = field(default_factory=time.perf_counter)
    wait_s: float = 0.0
    step_s: float = 0.0
    window_wait_s: float = 0.0
    window_step_s: float = 0.0
    first_bad_step: Optional[torch.Tensor] = None  # the first step whose loss was not finite (-1: none)
    bad_loss: Optional[torch.Tensor] = None
    lrs: Dict[int, float] = field(default_factory=dict)  # the lr of each step since the last check

    def images_per_s(self) -> float:
        return self.images / max(time.perf_counter() - self.started, 1e-9)

    def note_loss(self, loss: torch.Tensor, images: int, step: int, lr: float) -> None:
        """Adds a step's loss (a device scalar) to the sum and remembers the first non-finite one, without a sync."""
        loss = loss.double()
        if self.loss_sum is None:
            self.loss_sum = torch.zeros((), dtype=torch.float64, device=loss.device)
            self.first_bad_step = torch.full((), -1, dtype=torch.int64, device=loss.device)
            self.bad_loss = torch.zeros((), dtype=torch.float64, device=loss.device)
        self.loss_sum += loss * images
        self.images += images
        first = (self.first_bad_step < 0) & ~torch.isfinite(loss)
        self.first_bad_step = torch.where(first, step, self.first_bad_step)
        self.bad_loss = torch.where(first, loss, self.bad_loss)
        self.lrs[step] = lr

    def loss_total(self) -> float:
        return float(self.loss_sum) if self.loss_sum is not None else 0.0

    def raise_if_non_finite(self, run, epoch: int) -> None:
        """Raises on the first non-finite loss of any rank since the last check (every rank calls this at the
        same steps, so all stop together rather than some waiting in an all-reduce). Called before every save:
        the last good checkpoint stays as it is."""
        mine = int(self.first_bad_step) if self.first_bad_step is not None else -1
        # the earliest bad step over the ranks: the largest of -step (no bad step: a value below any step)
        never = -(2 ** 62)
        earliest = -distributed.max_over_ranks(-mine if mine >= 0 else never)
        if earliest == -never:
            self.lrs.clear()
            return
        loss = f"loss {float(self.bad_loss)}" if mine == earliest else "a non-finite loss on another rank"
        lr = self.lrs.get(earliest, float("nan"))
        raise FloatingPointError(
            f"non-finite loss at {where(run, epoch, earliest)} ({loss}, lr {lr:.3g}): lower the lr (optim.lr / "
            f"optim.base_lr), add warm-up (sched.warmup_epochs) or clip gradients "
            f"(optim.clip_grad=1.0); the run resumes from its last good checkpoint when given the same command")

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


class StepClock:
    """A step's data wait and whole time. On the CPU, host clocks: the step ends when the host is done with it.
    On CUDA the host queues work ahead of the device, so host time blocked on the loader is not time the device
    waited: an event is recorded when each batch is ready on the main stream and another when its step is queued;
    the device waited from the previous step's end to this batch's ready event (zero when the host was ahead), and
    its step took from the previous step's end to its own. Events are read at the sync points (``collect``)."""

    def __init__(self, device: torch.device):
        self.on_cuda = device.type == "cuda"
        self.pending: List[Tuple[Any, Any, Any]] = []
        self.last_done = self._event() if self.on_cuda else None
        self.ready = None
        self.fetch_started = 0.0
        self.waited = 0.0

    @staticmethod
    def _event():
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def fetching(self) -> None:
        self.fetch_started = time.perf_counter()

    def batch_ready(self) -> None:
        self.waited = time.perf_counter() - self.fetch_started
        if self.on_cuda:
            self.ready = self._event()

    def step_done(self, meter: EpochMeter) -> None:
        if not self.on_cuda:
            meter.add_step(self.waited, time.perf_counter() - self.fetch_started)
            return
        done = self._event()
        self.pending.append((self.last_done, self.ready, done))
        self.last_done = done

    def collect(self, meter: EpochMeter) -> None:
        """Adds the device's wait and step times of the steps since the last call (CUDA: waits for the last)."""
        if not self.pending:
            return
        self.pending[-1][2].synchronize()
        for previous, ready, done in self.pending:
            meter.add_step(previous.elapsed_time(ready) / 1000, previous.elapsed_time(done) / 1000)
        self.pending.clear()


def micro_batches(images: torch.Tensor, targets: torch.Tensor, steps: int):
    """``steps`` micro-batches of this rank's batch (a short last batch gives what it has: fewer or smaller)."""
    return list(zip(torch.tensor_split(images, steps), torch.tensor_split(targets, steps)))


def train_step(run, images: torch.Tensor, targets: torch.Tensor, epoch: int, step: int) -> torch.Tensor:
    """One optimizer update on one batch, in ``run.grad_accum_steps`` micro-batches; returns the batch's mean
    loss on this rank, a detached device scalar (reading it would wait for the device: ``EpochMeter`` reads it at
    the sync points, and checks it is finite there).

    Each micro-batch's mean loss is weighed by its share of the global batch (its images x ranks / the images of
    all ranks), so that the gradients summed over the micro-batches and averaged by DDP over the ranks are those of
    the global batch's mean loss: batch B in k micro-batches of B/k, or over n ranks of B/n, gives the update of
    batch B in one (to float rounding), a short last batch included. DDP syncs gradients on the last micro-batch
    only (``no_sync``)."""
    if run.data.mixup is not None:  # on the whole batch, so that accumulation leaves its draws alone
        images, targets = run.data.mixup(images, targets)
    pieces = [piece for piece in micro_batches(images, targets, run.grad_accum_steps) if len(piece[0])]
    ranks = distributed.world_size()
    total = distributed.global_batch_size(run.batches.loader, step % len(run.batches.loader), images.shape[0])
    run.optimizer.zero_grad(set_to_none=True)
    loss_value = None
    for index, (micro_images, micro_targets) in enumerate(pieces):
        with no_gradient_sync(run.train_model, skip=index < len(pieces) - 1):
            with autocast(run.device, run.amp_dtype):
                loss = run.criterion(run.train_model(micro_images), micro_targets)
            # one piece on one rank: a factor of exactly 1, so the numbers are those of a plain step
            share = micro_images.shape[0] * ranks / total
            run.scaler.scale(loss * share if share != 1 else loss).backward()  # the scaler: a pass-through unless fp16
        micro_loss = loss.detach().double()  # in float64, as the float sum it replaces
        weighed = micro_loss * micro_images.shape[0] / images.shape[0]
        loss_value = micro_loss if len(pieces) == 1 else weighed if loss_value is None else loss_value + weighed
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
    checkpoint (``meter.raise_if_non_finite`` first) or stop between steps; ``meter`` sums the epoch's loss and
    images. The host waits for the device only at logged steps and at the epoch's end."""
    run.train_model.train()
    bar = tqdm(run.data.train_to_device(run.batches.epoch(epoch)), total=len(run.batches),
               desc=f"epoch {epoch + 1}/{run.num_epochs}", leave=False, dynamic_ncols=True, disable=not progress)
    batches = iter(bar)
    clock = StepClock(run.device)
    while True:
        clock.fetching()
        batch = next(batches, None)  # the time blocked here is the step's data wait (the host's, on the CPU)
        if batch is None:
            break
        images, targets = batch
        images = images.to(run.device, non_blocking=True)
        targets = targets.to(run.device, non_blocking=True)
        clock.batch_ready()
        lr = run.optimizer.param_groups[0]["lr"]
        loss = train_step(run, images, targets, epoch, state.step)
        state.step += 1
        if run.ema is not None:
            run.ema.update(run.train_model, step=state.step)
        run.scheduler.step_update(num_updates=state.step)
        meter.note_loss(loss, images.shape[0], state.step, lr)
        clock.step_done(meter)
        if state.step % log_every == 0:  # a sync point
            meter.raise_if_non_finite(run, epoch)
            clock.collect(meter)
            log_step(run, epoch, state, meter, logger, bar, progress, float(loss))
        yield
    if meter.images == 0:
        raise ValueError("the training loader gave no batches: lower train.batch_size or add data")
    meter.raise_if_non_finite(run, epoch)
    clock.collect(meter)


def log_step(run, epoch: int, state, meter: EpochMeter, logger, bar, progress: bool, loss: float) -> None:
    lr, speed = run.optimizer.param_groups[0]["lr"], meter.images_per_s()
    if progress:
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", img_s=f"{speed:.0f}")
    else:
        log.info("%s: loss %.4f, lr %.3e, %.0f img/s, ETA %s", where(run, epoch, state.step), loss, lr, speed,
                 run_eta(run, state.step))
    logger.log_step({"train/loss": loss, "train/lr": lr, "train/images_per_s": speed,
                     "train/data_wait_frac": meter.window_data_wait_frac()}, state.step)


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
    (``target``, ``pred``, ``pred_branch`` as int64 numpy arrays, in the loader's order). The sums stay on the
    device until the pass ends: one copy to the host, not several a batch."""
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, top-1, top-5, each x images
    seen = 0
    targets_seen, preds, branch_preds = [], [], []
    for images, targets in loader:
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            branch_logits = _branch_logits(model, images)
        branch_logits = branch_logits.float()
        logits = branch_logits.mean(0)
        top1, top5 = accuracy(logits, targets, topk=(1, min(5, logits.shape[1])))
        count = images.shape[0]
        sums += torch.stack([F.cross_entropy(logits, targets), top1, top5]).double() * count
        seen += count
        targets_seen.append(targets)
        preds.append(logits.argmax(-1))
        branch_preds.append(branch_logits.argmax(-1))
    loss_sum, top1_sum, top5_sum = sums.tolist()
    target = torch.cat(targets_seen).cpu()
    pred_branch = torch.cat(branch_preds, dim=1).cpu()
    top1_branch = [(row == target).double().mean().item() * 100 for row in pred_branch]
    predictions = {"target": target.long().numpy(), "pred": torch.cat(preds).cpu().long().numpy(),
                   "pred_branch": pred_branch.long().numpy()}
    return {"loss": loss_sum / seen, "top1": top1_sum / seen, "top5": top5_sum / seen,
            "top1_branch": top1_branch, "predictions": predictions}


def use_progress_bar(setting: str) -> bool:
    """``train.progress`` (its choices are the schema's): a bar, or log lines."""
    return setting == "bar" or (setting == "auto" and sys.stderr.isatty())
