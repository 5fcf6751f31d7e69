"""The start-up line that says what the model is fed: the input size, what each branch sees, and the augmentation
in effect (``data.*``: the DeiT recipe is on unless a data or recipe option turns it off, so it is named)."""
from typing import Optional, Tuple

import torch
from PIL import Image
from torch.utils.data import Dataset, Subset

# what turns each part off, to name only the parts in effect
_OFF = {"auto_augment": None, "mixup": 0, "cutmix": 0, "reprob": 0, "smoothing": 0, "hflip": 0, "color_jitter": 0}


def describe_inputs(data_cfg, model: torch.nn.Module, train_set: Dataset) -> str:
    branches = "; ".join(
        f"branch {b} sees {size} px in {size // grid[0]}-px patches ({grid[0]}x{grid[1]} tokens)"
        for b, (size, grid) in enumerate(zip(model.img_size_scaled, model.grid_sizes)))
    stored = stored_size(train_set)
    resized = f" (the first training image is stored at {stored[0]}x{stored[1]} px)" if stored else ""
    return f"input {model.img_size} px{resized}: {branches}; training augmentation: {augmentation(data_cfg)}"


def stored_size(dataset: Dataset) -> Optional[Tuple[int, int]]:
    """The first image's size as stored (read from its header: timm's readers, the digits' array), or None."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    if hasattr(dataset, "reader") and len(dataset):
        file, _ = dataset.reader[0]
        with file, Image.open(file) as image:
            return image.size
    if hasattr(dataset, "images") and len(dataset):
        return tuple(reversed(dataset.images[0].shape[:2]))
    return None


def augmentation(data_cfg) -> str:
    if data_cfg.name == "synthetic":
        return "none (synthetic images)"
    if data_cfg.name == "multiscale_digits":
        return "the renders themselves (a fresh scale and place for every digit each epoch), no other"
    parts = [f"random-resized crop (scale {list(data_cfg.scale)}, {data_cfg.interpolation})"]
    if data_cfg.hflip:
        parts.append(f"horizontal flip {data_cfg.hflip}")
    if data_cfg.auto_augment:
        kind = "RandAugment" if data_cfg.auto_augment.startswith("rand") else "AutoAugment"
        parts.append(f"{kind} {data_cfg.auto_augment}")
    elif data_cfg.color_jitter:
        parts.append(f"colour jitter {data_cfg.color_jitter}")
    if data_cfg.mixup or data_cfg.cutmix:
        parts.append(f"mixup {data_cfg.mixup} / cutmix {data_cfg.cutmix}")
    if data_cfg.reprob:
        parts.append(f"random erasing {data_cfg.reprob} ({data_cfg.remode or 'const'})")
    if data_cfg.smoothing:
        parts.append(f"label smoothing {data_cfg.smoothing}")
    if data_cfg.repeated_aug:
        parts.append("repeated augmentation")
    return ", ".join(parts) + f"; evaluation: resize and centre crop {data_cfg.crop_pct}"
