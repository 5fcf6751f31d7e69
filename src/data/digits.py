"""scikit-learn's handwritten digits (1,797 real 8x8 images, values 0-16) as a PIL-image dataset."""
import random
from typing import Callable, Optional, Tuple

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

NUM_CLASSES = 10


class DigitsDataset(Dataset):
    def __init__(self, images: np.ndarray, targets: np.ndarray, transform: Optional[Callable] = None):
        self.images, self.targets, self.transform = images, targets, transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index]).convert("RGB")
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])


def sklearn_digits():
    """scikit-learn's loader and splitter, imported on first use (a second, which runs on other data would pay)
    with Python's global random state put back: importing scikit-learn draws from it, and a run seeds it first."""
    state = random.getstate()
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    finally:
        random.setstate(state)
    return load_digits, train_test_split


def digits_split(val_fraction: float, split_seed: int) -> Tuple[Tuple[np.ndarray, np.ndarray],
                                                                 Tuple[np.ndarray, np.ndarray]]:
    """A stratified train/val split that depends only on ``split_seed``, never on the run's seed, so every
    run of a sweep is evaluated on the same images."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"data.val_fraction={val_fraction} must lie strictly between 0 and 1 (e.g. 0.2)")
    load_digits, train_test_split = sklearn_digits()
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # 0-16 -> 0-255 grey levels
    train_x, val_x, train_y, val_y = train_test_split(
        images, digits.target, test_size=val_fraction, stratify=digits.target, random_state=split_seed)
    return (train_x, train_y), (val_x, val_y)
