"""Datasets, timm transforms, loaders and mixup for one run: ``build_data(cfg.data, ...)``; what the data is and
its classes: ``check_data_source``, ``class_names``, ``resolve_num_classes``; what each validation image was made
from: ``dataset_sources``, ``validation_sources`` (``sources``)."""
import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch
from omegaconf import OmegaConf
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, Mixup, create_transform
from timm.data.distributed_sampler import RepeatAugSampler
from timm.data.random_erasing import RandomErasing
from torch.utils.data import DataLoader, Dataset, Subset

from .digits import DigitsDataset, digits_split
from .folders import check_eval_folder, cifar, eval_folder_dataset, image_folders
from .multiscale_digits import multiscale_digits
from .posterize import fix_posterize
from .prefetch import DeviceBatches
from .selection import hold_out, selection_count, with_transform
from .shards import shard_datasets
from .sources import (  # noqa: F401 - src.data's API
    DATASETS,
    check_data_source,
    class_names,
    resolve_num_classes,
    validation_sources,
)
from .synthetic import SyntheticDataset

FOLDERS = ("imagenet", "imagefolder")  # image folders: a test set may be the class folders alone (src.eval)


@dataclass
class Data:
    train_loader: DataLoader
    val_loader: DataLoader
    mixup: Optional[Mixup]  # None when mixup and cutmix are off
    num_train: int
    num_val: int
    # the train and val batches on the device (CUDA: one step ahead, normalised there; CPU: as they come)
    train_to_device: DeviceBatches
    val_to_device: DeviceBatches
    class_names: List[str]  # label order: the model's output i is class_names[i] (``sources.class_names``)
    val_sources: Optional[np.ndarray] = None  # what each validation image was made from (``dataset_sources``)
    # the selection split (``data.selection``), evaluated as the validation split is; None: none held out
    selection_loader: Optional[DataLoader] = None
    num_selection: int = 0

    @property
    def val_units(self) -> Optional[int]:
        """The validation set's independent units: its distinct sources; None where every image is its own."""
        return None if self.val_sources is None else len(np.unique(self.val_sources))


# data.num_workers=null on CUDA: the CPUs this rank has, one kept for the training process, at most this many
# (DeiT trains with 10 per GPU; more rarely helps and each costs memory)
MAX_AUTO_WORKERS = 16


def cpus_for_this_rank() -> int:
    """SLURM's CPUs per task when SLURM set it, else this process's CPU affinity shared among torchrun's local
    ranks."""
    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return int(os.environ["SLURM_CPUS_PER_TASK"])
    return max(1, len(os.sched_getaffinity(0)) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def resolve_workers(setting: Optional[int], device: torch.device) -> int:
    """``data.num_workers``: a count as given; null (auto) is 0 on the CPU (the numbers stay those of one
    process) and on CUDA the CPUs this rank has but one, at most ``MAX_AUTO_WORKERS``."""
    if setting is None:
        return 0 if device.type != "cuda" else max(1, min(MAX_AUTO_WORKERS, cpus_for_this_rank() - 1))
    if setting < 0:
        raise ValueError(f"data.num_workers={setting}: use 0 (load in the training process), a count of worker "
                         f"processes, or null (auto: the CPUs this rank has on CUDA, 0 on the CPU)")
    return setting


def uses_device_transforms(device: torch.device) -> bool:
    """On CUDA the image pipelines stop at uint8 tensors and ``DeviceBatches`` normalises (timm's prefetcher)."""
    return device.type == "cuda"


def build_transforms(data_cfg, image_size: int, prefetch: bool = False):
    """timm's train and eval transforms; ``prefetch``: without the normalisation and random erasing, which
    ``DeviceBatches`` does on the device."""
    common = dict(input_size=image_size, interpolation=data_cfg.interpolation, mean=IMAGENET_DEFAULT_MEAN,
                  std=IMAGENET_DEFAULT_STD, use_prefetcher=prefetch)
    # color_jitter 0 -> None: timm would still add a ColorJitter(0), a no-op that costs ~80 us an image
    # (a third of the digits pipeline) and draws from the RNG.
    train = create_transform(is_training=True, auto_augment=data_cfg.auto_augment, re_prob=data_cfg.reprob,
                             re_mode=data_cfg.remode or "const", hflip=data_cfg.hflip,
                             color_jitter=data_cfg.color_jitter or None, scale=tuple(data_cfg.scale), **common)
    fix_posterize(train)  # Pillow 13 rejects the 0 bits RandAugment asks for about once in 700 images
    return train, create_transform(is_training=False, crop_pct=data_cfg.crop_pct, **common)


def device_batches(data_cfg, device: torch.device) -> Tuple[DeviceBatches, DeviceBatches]:
    """Train and val ``DeviceBatches``; on CUDA the train one erases at ``data.reprob`` as timm's prefetcher does."""
    erasing = (RandomErasing(data_cfg.reprob, mode=data_cfg.remode or "const", device=device)
               if uses_device_transforms(device) and data_cfg.reprob > 0 else None)
    return (DeviceBatches(device, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, erasing),
            DeviceBatches(device, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD))


def build_datasets(data_cfg, image_size: int, seed: int, prefetch: bool = False):
    """(train, val, num_classes the data has); ``seed`` (the run's) draws multiscale_digits' training renders;
    ``prefetch``: image pipelines end in uint8 tensors (``build_transforms``). With ``data.selection``, train is
    what is left once the selection split is held out (``build_selection``)."""
    train, val, _ = build_splits(data_cfg, image_size, seed, prefetch)
    return train, val, len(class_names(data_cfg))


def build_splits(data_cfg, image_size: int, seed: int,
                 prefetch: bool = False) -> Tuple[Dataset, Dataset, Optional[Dataset]]:
    """(train, val, selection): selection None unless ``data.selection`` holds some of the training data out
    (``src.data.selection``); checks the source first (``check_data_source``)."""
    class_names(data_cfg)
    return _datasets(data_cfg, image_size, seed, prefetch)


def check_selection(data_cfg) -> None:
    """``data.selection`` against the training data's size (its digits for multiscale_digits, which holds out whole
    digits), before any work: a split that leaves nothing to train on names the key and the fix. Shards are
    counted when they are read (indexing them here would read every tar)."""
    if not data_cfg.selection or data_cfg.name == "shards":
        return
    if data_cfg.name == "synthetic":
        available, unit = data_cfg.num_train, "image"
    elif data_cfg.name in ("digits", "multiscale_digits"):
        available = len(digits_split(data_cfg.val_fraction, data_cfg.split_seed)[0][1])
        unit = "digit" if data_cfg.name == "multiscale_digits" else "image"
    else:  # the files are listed, not decoded
        available, unit = len(_datasets(OmegaConf.merge(data_cfg, {"selection": 0}), 32, 0, False)[0]), "image"
    selection_count(data_cfg.selection, available, unit)


def _datasets(data_cfg, image_size: int, seed: int, prefetch: bool) -> Tuple[Dataset, Dataset, Optional[Dataset]]:
    name, selection, split_seed = data_cfg.name, data_cfg.selection, data_cfg.split_seed
    if name == "synthetic":  # no augmentation: the training images are their own eval view
        seed = data_cfg.split_seed
        train, held_out = hold_out(SyntheticDataset(data_cfg.num_train, data_cfg.num_classes, image_size, seed),
                                   None, selection, split_seed)
        return train, SyntheticDataset(data_cfg.num_val, data_cfg.num_classes, image_size, seed + 1), held_out
    if name == "multiscale_digits":  # the render is the augmentation: training images take the eval transform
        return multiscale_digits(data_cfg, image_size, seed)
    train_transform, eval_transform = build_transforms(data_cfg, image_size, prefetch)
    if name == "digits":
        (train_x, train_y), (val_x, val_y) = digits_split(data_cfg.val_fraction, data_cfg.split_seed)
        train, val = DigitsDataset(train_x, train_y, train_transform), DigitsDataset(val_x, val_y, eval_transform)
    elif name in ("cifar10", "cifar100"):
        train, val = cifar(name, data_cfg.root, data_cfg.download, train_transform, eval_transform)
    elif name == "shards":
        train, val = shard_datasets(data_cfg.root, data_cfg.train_shards, data_cfg.val_shards, train_transform,
                                    eval_transform)
    else:
        train, val = image_folders(name, data_cfg.root, train_transform, eval_transform)  # imagenet, imagefolder
    train, held_out = hold_out(train, with_transform(train, eval_transform) if selection else None, selection,
                               split_seed)
    return train, val, held_out


def _limit(dataset: Dataset, limit: Optional[int]) -> Dataset:
    return dataset if limit is None or limit >= len(dataset) else Subset(dataset, range(limit))


def unlimited(dataset: Dataset) -> Dataset:
    """The dataset under ``data.limit_*``'s and ``data.selection``'s ``Subset``s."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset


def dataset_sources(dataset: Dataset) -> Optional[np.ndarray]:
    """The source of each image of ``dataset`` (its ``sources``, through ``data.limit_*``'s ``Subset``), where
    images share one (``validation_sources``); None where every image is its own."""
    sources = getattr(unlimited(dataset), "sources", None)
    if sources is None or not isinstance(dataset, Subset):
        return sources
    return np.asarray(sources)[np.asarray(dataset.indices)]


def set_epoch(dataset: Dataset, epoch: int) -> None:
    """Tells a dataset that draws afresh every epoch (``multiscale_digits``) which epoch the next pass is."""
    if hasattr(unlimited(dataset), "set_epoch"):
        unlimited(dataset).set_epoch(epoch)


def build_mixup(data_cfg, num_classes: int) -> Optional[Mixup]:
    if data_cfg.mixup <= 0 and data_cfg.cutmix <= 0:
        return None
    return Mixup(mixup_alpha=data_cfg.mixup, cutmix_alpha=data_cfg.cutmix, label_smoothing=data_cfg.smoothing,
                 num_classes=num_classes)


CPU = torch.device("cpu")


def build_data(data_cfg, image_size: int, batch_size: int, eval_batch_size: int, seed: int,
               device: torch.device = CPU) -> Data:
    """Check the data against the run's settings before any work: class count (``data.num_classes`` null: the
    data's own), batch size, mixup, workers."""
    if batch_size < 1 or eval_batch_size < 1:
        raise ValueError(f"train.batch_size={batch_size} (eval {eval_batch_size}) must be >= 1, e.g. "
                         f"train.batch_size=64")
    workers = resolve_workers(data_cfg.num_workers, device)
    num_classes = resolve_num_classes(data_cfg)
    train, val, selection = build_splits(data_cfg, image_size, seed, prefetch=uses_device_transforms(device))
    train, val = _limit(train, data_cfg.limit_train), _limit(val, data_cfg.limit_val)
    selection = _limit(selection, data_cfg.limit_val) if selection is not None else None
    mixup = build_mixup(data_cfg, num_classes)
    if mixup is not None and batch_size % 2:
        raise ValueError(f"mixup/cutmix need an even batch, got train.batch_size={batch_size}: use "
                         f"{batch_size + 1}, or turn them off with data.mixup=0 data.cutmix=0")
    drop_last = mixup is not None  # timm's Mixup needs an even batch, so no short last batch
    if drop_last and batch_size > len(train):
        raise ValueError(f"train.batch_size={batch_size} is larger than the {len(train)} training images and "
                         f"mixup drops incomplete batches: set train.batch_size <= {len(train)}")
    generator = torch.Generator().manual_seed(seed)
    sampler = (RepeatAugSampler(train, num_replicas=1, rank=0, shuffle=True) if data_cfg.repeated_aug else None)
    # Training workers start afresh each epoch, seeded from the loader's generator (which checkpoints save): a
    # persistent worker would carry its random state from epoch to epoch, which no checkpoint holds, so a resumed
    # run would augment differently from the uninterrupted one (and a dataset with set_epoch, multiscale_digits,
    # would keep a stale copy). The cost is the workers' start once an epoch.
    pinned = device.type == "cuda"  # pinned host memory: the copy to the GPU can overlap the step
    train_loader = DataLoader(train, batch_size=batch_size, shuffle=sampler is None, sampler=sampler,
                              drop_last=drop_last, num_workers=workers, generator=generator,
                              pin_memory=pinned, persistent_workers=False)
    val_loader, selection_loader = (
        DataLoader(dataset, batch_size=eval_batch_size, shuffle=False, num_workers=workers, pin_memory=pinned,
                   persistent_workers=workers > 0) if dataset is not None else None
        for dataset in (val, selection))
    train_to_device, val_to_device = device_batches(data_cfg, device)
    return Data(train_loader, val_loader, mixup, len(train), len(val), train_to_device, val_to_device,
                class_names(data_cfg), dataset_sources(val), selection_loader,
                len(selection) if selection is not None else 0)


def eval_class_names(data_cfg) -> List[str]:
    """The class names of a test set (``python -m src.eval``): an image folder may hold the class folders
    themselves or val/; any other dataset is its validation split (``class_names``)."""
    if data_cfg.name in FOLDERS:
        if not data_cfg.root:
            raise ValueError(f"data.root is not set for {data_cfg.name}: pass data.root=/path/to/the/class/folders")
        return list(check_eval_folder(data_cfg.name, str(data_cfg.root)))
    return class_names(data_cfg)


def build_eval_data(data_cfg, image_size: int, eval_batch_size: int,
                    device: torch.device = CPU) -> Tuple[DataLoader, DeviceBatches]:
    """A test set's loader (``eval_class_names``' data, in a fixed order) and its ``DeviceBatches``."""
    prefetch = uses_device_transforms(device)
    if data_cfg.name in FOLDERS:
        _, transform = build_transforms(data_cfg, image_size, prefetch)
        dataset = eval_folder_dataset(data_cfg.name, str(data_cfg.root), transform)
    else:
        dataset = build_datasets(data_cfg, image_size, seed=0, prefetch=prefetch)[1]
    dataset = _limit(dataset, data_cfg.limit_val)
    workers = resolve_workers(data_cfg.num_workers, device)
    loader = DataLoader(dataset, batch_size=eval_batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda")
    return loader, device_batches(data_cfg, device)[1]
