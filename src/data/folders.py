"""Datasets on disk: CIFAR-10/100 (torchvision) and ImageNet-style train/ and val/ class folders. A missing
dataset is an error saying where we looked and how to get it."""
from pathlib import Path
from typing import Callable, Tuple

from torch.utils.data import Dataset

CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def cifar(name: str, root: str, download: bool, train_transform: Callable,
          eval_transform: Callable) -> Tuple[Dataset, Dataset]:
    from torchvision.datasets import CIFAR10, CIFAR100

    folder = Path(root).expanduser() / CIFAR_FOLDERS[name]
    if not download and not folder.is_dir():
        raise FileNotFoundError(
            f"{name} not found: looked for {folder.resolve()}. Fix: run once with data.download=true (needs "
            f"network), or unpack the python version of {name} from https://www.cs.toronto.edu/~kriz/cifar.html "
            f"into {Path(root).expanduser().resolve()}, or point data.root at the folder that holds "
            f"{CIFAR_FOLDERS[name]}/")
    dataset = CIFAR10 if name == "cifar10" else CIFAR100
    return (dataset(root, train=True, download=download, transform=train_transform),
            dataset(root, train=False, download=download, transform=eval_transform))


def image_folders(name: str, root: str, train_transform: Callable,
                  eval_transform: Callable) -> Tuple[Dataset, Dataset]:
    from torchvision.datasets import ImageFolder

    root_path = Path(root).expanduser()
    missing = [str((root_path / split).resolve()) for split in ("train", "val")
               if not (root_path / split).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"{name} not found: looked for {' and '.join(missing)}. Fix: set data.root to a folder holding "
            f"train/CLASS/*.jpg and val/CLASS/*.jpg (for ImageNet, the extracted ILSVRC2012 train and val "
            f"sets with val sorted into class folders)")
    train, val = ImageFolder(root_path / "train", train_transform), ImageFolder(root_path / "val", eval_transform)
    if train.classes != val.classes:
        raise ValueError(f"{name}: train/ has {len(train.classes)} classes but val/ has {len(val.classes)}; "
                         f"both must hold the same class folders")
    return train, val
