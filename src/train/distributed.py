"""DDP the standard way: ``torchrun --nproc_per_node=N`` sets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/PORT;
``init`` joins the process group (NCCL on GPU, Gloo on CPU). Metrics are reduced as sums of counts (correct
predictions, loss x images, images), never as a mean of per-rank means, so uneven last batches stay exact."""
import logging
import os
from typing import Dict, Optional

import torch
import torch.distributed as dist
from timm.data.distributed_sampler import RepeatAugSampler
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

log = logging.getLogger(__name__)


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init(device: Optional[torch.device] = None) -> bool:
    """Joins the process group when launched by torchrun; returns True when distributed."""
    if dist.is_available() and dist.is_initialized():
        return True
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) < 2:
        return False
    on_gpu = (device is None or device.type == "cuda") and torch.cuda.is_available()
    backend = "nccl" if on_gpu else "gloo"
    if on_gpu:
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend)
    log.info("DDP: rank %d of %d, backend %s", rank(), world_size(), backend)
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


def teardown() -> None:
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()


def shard_loader(loader, seed: int):
    """The same loader, each rank drawing its 1/world_size of every epoch (``train.batch_size`` is the global
    batch, split across ranks); unchanged when not distributed. Repeated augmentation stays on: timm's
    ``RepeatAugSampler`` is rebuilt for this rank."""
    if not is_distributed():
        return loader
    world = world_size()
    if loader.batch_size % world:
        raise ValueError(f"train.batch_size={loader.batch_size} is the global batch and must split evenly across "
                         f"{world} processes: use a multiple of {world}")
    if isinstance(loader.sampler, RepeatAugSampler):
        rank_sampler = RepeatAugSampler(loader.dataset, num_replicas=world, rank=rank(), shuffle=True,
                                        num_repeats=loader.sampler.num_repeats)
    else:
        rank_sampler = sampler(loader.dataset, shuffle=True, seed=seed, drop_last=loader.drop_last)
    return type(loader)(loader.dataset, batch_size=loader.batch_size // world, sampler=rank_sampler,
                        drop_last=loader.drop_last, num_workers=loader.num_workers, pin_memory=loader.pin_memory,
                        generator=torch.Generator().manual_seed(seed),
                        persistent_workers=loader.persistent_workers)
