"""Datasets and loaders: the digits split, synthetic determinism, folder datasets and each bad input."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from src.config import DataConfig
from src.data import build_data, build_datasets
from src.data.digits import digits_split
from src.data.synthetic import SyntheticDataset


def data_cfg(**overrides):
    values = vars(DataConfig(name="digits", num_classes=10))
    values.update(auto_augment=None, mixup=0.0, cutmix=0.0, reprob=0.0)
    values.update(overrides)
    return SimpleNamespace(**values)


def test_digits_split_is_fixed_stratified_and_independent_of_the_run_seed():
    (train_x, train_y), (val_x, val_y) = digits_split(0.2, split_seed=0)
    assert (len(train_y), len(val_y)) == (1437, 360)
    assert train_x.shape[1:] == (8, 8) and train_x.dtype == np.uint8 and train_x.max() == 255
    assert np.abs(np.bincount(val_y) / len(val_y) - np.bincount(train_y) / len(train_y)).max() < 0.01
    (_, again_y), _ = digits_split(0.2, split_seed=0)
    np.testing.assert_array_equal(train_y, again_y)
    for seed in (0, 1):  # the run's seed shuffles batches, never the split
        data = build_data(data_cfg(), 32, 64, 64, seed=seed)
        assert data.num_train == 1437 and data.num_val == 360


def test_digits_are_resized_to_the_model_input():
    data = build_data(data_cfg(), 32, 16, 16, seed=0)
    images, targets = next(iter(data.train_loader))
    assert images.shape == (16, 3, 32, 32) and targets.dtype == torch.int64


def test_synthetic_is_deterministic_for_any_size_and_class_count():
    first, second = SyntheticDataset(8, 7, 48, seed=3), SyntheticDataset(8, 7, 48, seed=3)
    for index in range(8):
        image, target = first[index]
        assert image.shape == (3, 48, 48) and 0 <= target < 7
        assert torch.equal(image, second[index][0]) and target == second[index][1]
    assert not torch.equal(first[0][0], SyntheticDataset(8, 7, 48, seed=4)[0][0])


def test_limits_take_the_first_samples():
    data = build_data(data_cfg(limit_train=100, limit_val=30), 32, 10, 10, seed=0)
    assert (data.num_train, data.num_val) == (100, 30)


def test_mixup_gives_soft_targets_and_even_full_batches():
    data = build_data(data_cfg(mixup=0.8, cutmix=1.0, limit_train=70), 32, 16, 16, seed=0)
    assert data.mixup is not None and len(data.train_loader) == 4  # 70 // 16, last short batch dropped
    images, targets = data.mixup(*next(iter(data.train_loader)))
    assert targets.shape == (16, 10)


def test_image_folders_load_with_their_class_count(tmp_path):
    for split in ("train", "val"):
        for label in ("cat", "dog", "fox"):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            for index in range(2):
                Image.fromarray(np.full((20, 20, 3), index * 100, np.uint8)).save(folder / f"{index}.png")
    train, val, classes = build_datasets(data_cfg(name="imagefolder", root=str(tmp_path)), 32, seed=0)
    assert (len(train), len(val), classes) == (6, 6, 3)
    assert train[0][0].shape == (3, 32, 32)
    data = build_data(data_cfg(name="imagefolder", root=str(tmp_path), num_classes=None), 32, 2, 2, seed=0)
    assert data.class_names == ["cat", "dog", "fox"] and data.num_train == 6


@pytest.mark.parametrize("overrides,batch,message", [
    (dict(num_classes=5), 8, r"data.num_classes=5 but digits has 10 classes: set data.num_classes=10, or null"),
    (dict(name="synthetic", num_classes=None), 8, r"synthetic data has no classes of its own: give a count"),
    (dict(name="shards", root=None), 8, r"data.root is not set for shards"),
    (dict(), 0, r"train.batch_size=0 .* must be >= 1"),
    (dict(mixup=0.8), 7, r"mixup/cutmix need an even batch, got train.batch_size=7"),
    (dict(mixup=0.8, limit_train=10), 16, r"larger than the 10 training images"),
    (dict(name="cifar10", root="/no/such/dir"), 8,
     r"cifar10 not found: looked for /no/such/dir/cifar-10-batches-py.*data.download=true"),
    (dict(name="imagenet", root="/no/such/dir"), 8, r"imagenet not found: looked for /no/such/dir/train"),
    (dict(name="imagefolder", root=None), 8, r"data.root is not set for imagefolder"),
    (dict(name="mnist"), 8, r"unknown data.name='mnist': pick one of digits, multiscale_digits, synthetic"),
])
def test_bad_data_input_names_the_problem_and_the_fix(overrides, batch, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        build_data(data_cfg(**overrides), 32, batch, max(batch, 1), seed=0)
