"""DDP the standard way: ``torchrun --nproc_per_node=N`` sets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/PORT, and a
SLURM step of several tasks gets them from SLURM's variables (``export_slurm_ranks``); ``init`` joins the process
group (NCCL on GPU, Gloo on CPU). Metrics are reduced as sums of counts (correct
predictions, loss x images, images), never as a mean of per-rank means, so uneven last batches stay exact."""
import hashlib
import logging
import os
import random
from functools import partial
from typing import Dict, Optional

import numpy as np
import torch
import torch.distributed as dist
from timm.data.distributed_sampler import RepeatAugSampler
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DistributedSampler, Sampler

log = logging.getLogger(__name__)


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def launched_by_slurm() -> bool:
    """One task of a SLURM job step of several (``srun -n N``, or ``hydra/launcher=slurm`` with
    ``tasks_per_node`` > 1): each task is one DDP rank. The step's count, not the job's: a batch script that runs
    one process is not a step of many."""
    tasks = os.environ.get("SLURM_STEP_NUM_TASKS", "")
    return tasks.isdigit() and int(tasks) > 1 and "SLURM_PROCID" in os.environ


def export_slurm_ranks() -> None:
    """torchrun's variables from SLURM's (submitit's reading of them: ranks, node list), as
    ``submitit.helpers.TorchDistributedEnvironment`` exports them but for any srun step, not only submitit's; the
    port follows from the job id, so every task of the job picks the same one."""
    from submitit.slurm.slurm import SlurmJobEnvironment

    job = SlurmJobEnvironment()
    tasks, nodes = int(os.environ["SLURM_STEP_NUM_TASKS"]), max(job.num_nodes, 1)
    os.environ.update(RANK=str(job.global_rank), WORLD_SIZE=str(tasks), LOCAL_RANK=str(job.local_rank),
                      LOCAL_WORLD_SIZE=str(tasks // nodes), MASTER_ADDR=job.hostnames[0],
                      MASTER_PORT=os.environ.get("MASTER_PORT") or str(random.Random(job.job_id).randint(20000, 60000)))


def check_one_rank_per_gpu(tasks_per_node: int, gpus: int) -> None:
    if tasks_per_node != gpus:
        raise ValueError(f"{tasks_per_node} SLURM task(s) on a node with {gpus} GPU(s): each task is one DDP rank on "
                         f"one GPU, so set hydra.launcher.tasks_per_node=hydra.launcher.gpus_per_node (both {gpus}, "
                         f"or both {tasks_per_node})")


def init(device: Optional[torch.device] = None) -> bool:
    """Joins the process group when launched by torchrun or as a SLURM step of several tasks; returns True when
    distributed."""
    if dist.is_available() and dist.is_initialized():
        return True
    if not launched_by_torchrun() and launched_by_slurm():
        export_slurm_ranks()
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) < 2:
        return False
    on_gpu = (device is None or device.type == "cuda") and torch.cuda.is_available()
    if on_gpu and launched_by_slurm():
        check_one_rank_per_gpu(int(os.environ["LOCAL_WORLD_SIZE"]), torch.cuda.device_count())
    backend = "nccl" if on_gpu else "gloo"
    if on_gpu:
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend)
    if rank() == 0:  # the other ranks write nothing to the run dir, its run.log included
        log.info("DDP: rank 0 of %d, backend %s", world_size(), backend)
    return True


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    """Only rank 0 writes files (results.json, checkpoints) and logs to W&B."""
    return rank() == 0


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    if not is_distributed():
        return model
    return DistributedDataParallel(model, device_ids=[torch.cuda.current_device()] if device.type == "cuda" else None)


def sampler(dataset, shuffle: bool, seed: int, drop_last: bool = False) -> DistributedSampler:
    """Each rank sees its own 1/world_size of the data; call ``set_epoch(epoch)`` to reshuffle per epoch."""
    return DistributedSampler(dataset, num_replicas=world_size(), rank=rank(), shuffle=shuffle, seed=seed,
                              drop_last=drop_last)


def reduce_sums(sums: Dict[str, float], device: torch.device) -> Dict[str, float]:
    """All-reduces a dict of sums (e.g. {"correct": .., "loss_sum": .., "count": ..}) across ranks."""
    if not is_distributed():
        return dict(sums)
    keys = sorted(sums)
    values = torch.tensor([float(sums[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return dict(zip(keys, values.tolist()))


def rank0_says(value):
    """Rank 0's ``value`` (picklable) on every rank: a decision only rank 0 takes (the run dir's lock)."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def teardown() -> None:
    global _control_group
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()
    _control_group = None


class RankSlices(Sampler):
    """This rank's part of every global batch: the single-process loader's batches (same sampler, same generator,
    drawn in the same order), each cut into ``world`` contiguous slices, so that the sequence of global batches does
    not depend on the number of processes. A short last batch is cut as evenly as it goes (``scale_loss`` weighs
    the slices back to the global mean)."""

    def __init__(self, global_batches: BatchSampler, rank: int, world: int):
        self.global_batches, self.rank, self.world = global_batches, rank, world

    def __iter__(self):
        for batch in self.global_batches:
            size, extra = divmod(len(batch), self.world)
            start = self.rank * size + min(self.rank, extra)
            yield batch[start:start + size + (self.rank < extra)]

    def __len__(self) -> int:
        return len(self.global_batches)


def check_split(batch_size: int, accumulation: int) -> None:
    """The global batch must split evenly across the processes and the accumulation steps: checked before any
    work."""
    if accumulation < 1:
        raise ValueError(f"train.grad_accum_steps={accumulation}: use 1 (no accumulation) or more micro-batches "
                         f"per optimizer step")
    parts = world_size() * accumulation
    if batch_size % parts:
        raise ValueError(f"train.batch_size={batch_size} is the global batch and must split evenly across "
                         f"{world_size()} process(es) x {accumulation} accumulation step(s): use a multiple of {parts}")


def shard_loader(loader, seed: int):
    """The same loader, each rank drawing its slice of every global batch (``train.batch_size`` is the global
    batch, split across ranks): the batches, their order and their generator are the single-process loader's, so
    the sequence of global batches is the same on any number of ranks (``RankSlices``); unchanged when not
    distributed. Repeated augmentation stays on: timm's ``RepeatAugSampler`` is rebuilt for this rank (its order
    does depend on the world size)."""
    if not is_distributed():
        return loader
    world = world_size()
    if isinstance(loader.sampler, RepeatAugSampler):
        rank_sampler = RepeatAugSampler(loader.dataset, num_replicas=world, rank=rank(), shuffle=True,
                                        num_repeats=loader.sampler.num_repeats)
        return type(loader)(loader.dataset, batch_size=loader.batch_size // world, sampler=rank_sampler,
                            drop_last=loader.drop_last, num_workers=loader.num_workers, pin_memory=loader.pin_memory,
                            generator=torch.Generator().manual_seed(seed),
                            persistent_workers=loader.persistent_workers, worker_init_fn=seed_workers(rank()))
    slices = RankSlices(loader.batch_sampler, rank(), world)
    return type(loader)(loader.dataset, batch_sampler=slices, num_workers=loader.num_workers,
                        pin_memory=loader.pin_memory, generator=loader.generator,
                        persistent_workers=loader.persistent_workers, worker_init_fn=seed_workers(rank()))


def global_batch_size(loader, index: int, local: int) -> int:
    """The images of the epoch's ``index``-th batch over all ranks, known without asking the others (an all-reduce
    and a host sync a step, on a GPU): ``RankSlices`` cuts the single-process loader's batches, whose sizes follow
    from the sampler's length; repeated augmentation gives every rank the same count; one process has its own."""
    if not is_distributed():
        return local
    sampler = loader.batch_sampler
    if isinstance(sampler, RankSlices):
        batches = sampler.global_batches
        if batches.drop_last:
            return batches.batch_size
        return min(batches.batch_size, len(batches.sampler) - index * batches.batch_size)
    return local * world_size()


def stream_seed(seed: int, rank_: Optional[int] = None) -> int:
    """The seed of this rank's random streams (augmentation, drop path, mixup, erasing): the run's seed on rank 0,
    so that one process draws what it always did, and on rank r > 0 a hash of (seed, r), distinct from every rank
    of every other seed (``seed + r`` would give seed 0's rank 1 the streams of seed 1's rank 0)."""
    rank_ = rank() if rank_ is None else rank_
    if rank_ == 0:
        return seed
    digest = hashlib.blake2b(f"{seed}/rank{rank_}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")  # < 2**32: numpy's seed range


def seed_workers(rank_: int):
    """A ``worker_init_fn`` that gives rank ``rank_``'s loader workers their own streams: every rank's loader draws
    its base seed from the same generator (it must, for the batches to be the same), so without this worker w of
    every rank would augment with the same draws."""
    return partial(_seed_worker, rank_)


def _seed_worker(rank_: int, worker_id: int) -> None:
    if rank_ == 0:  # torch's own worker seeding: rank 0 draws what one process draws
        return
    seed = stream_seed(torch.utils.data.get_worker_info().seed % 2**32, rank_)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


_control_group = None


def control_group():
    """A Gloo group for host-side decisions (stop, non-finite loss), so that agreeing on one costs no GPU sync;
    the default group when that is already Gloo."""
    global _control_group
    if _control_group is None:
        _control_group = (dist.group.WORLD if dist.get_backend() == "gloo" else dist.new_group(backend="gloo"))
    return _control_group


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is set on any rank (every rank must call it at the same point): a stop signal that
    reached one rank stops all of them at the same step."""
    if not is_distributed():
        return flag
    value = torch.tensor([int(flag)], dtype=torch.int64)
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=control_group())
    return bool(value.item())


def max_over_ranks(value: int) -> int:
    """The largest of the ranks' ``value`` (every rank must call it at the same point)."""
    if not is_distributed():
        return value
    box = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(box, op=dist.ReduceOp.MAX, group=control_group())
    return int(box.item())


def gather_to_all(value) -> list:
    """Every rank's ``value`` (picklable), in rank order, on every rank; ``[value]`` in one process."""
    if not is_distributed():
        return [value]
    values = [None] * world_size()
    dist.all_gather_object(values, value, group=control_group())
    return values
