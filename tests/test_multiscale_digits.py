"""data=multiscale_digits: renders deterministic in (seed, epoch, index), a fixed 10,080-image validation set that
no run's seed moves, scales that span the range, digits whole on the canvas, timm's eval values, a resumed epoch
with the same renders, each bad input, and a real one-epoch run."""
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from src.config import DataConfig, RenderConfig
from src.data import build_data, build_transforms, unlimited
from src.data.multiscale_digits import GreyToTensor, RenderSpec, _resized, render
from src.train.build import build_model
from src.train.checkpoint import ResumableBatches, capture_rng

from conftest import compose_config, run_module

CANVAS = 32


RENDER_KEYS = tuple(RenderConfig.__dataclass_fields__)


def data_cfg(**overrides):
    """conf/data/multiscale_digits.yaml's settings over src/config.py's defaults; the ``RenderConfig`` keys among
    ``overrides`` go to ``data.render``."""
    values = vars(DataConfig(name="multiscale_digits", num_classes=10))
    values.update(auto_augment=None, reprob=0.0, hflip=0.0, color_jitter=0.0, crop_pct=1.0, mixup=0.0, cutmix=0.0,
                  smoothing=0.0)
    render = vars(RenderConfig())
    render.update({key: value for key, value in overrides.items() if key in RENDER_KEYS})
    values.update({key: value for key, value in overrides.items() if key not in RENDER_KEYS})
    return SimpleNamespace(**{**values, "render": SimpleNamespace(**render)})


def datasets(seed=0, **overrides):
    data = build_data(data_cfg(**overrides), CANVAS, 64, 256, seed=seed)
    return unlimited(data.train_loader.dataset), data.val_loader.dataset


def test_the_yaml_matches_the_settings_these_tests_use():
    composed = compose_config(["data=multiscale_digits", "model=fusionvit_micro_32"]).data
    expected = vars(data_cfg())
    assert {key: composed[key] for key in expected if key != "render"} == {
        key: value for key, value in expected.items() if key != "render"}
    assert dict(composed.render) == vars(expected["render"])


def test_other_datasets_leave_render_null_so_their_config_identity_is_unchanged():
    assert compose_config(["data=digits"]).data.render is None


def test_training_renders_depend_on_seed_epoch_and_index_only():
    train, _ = datasets(seed=3)
    again, _ = datasets(seed=3)
    other_seed, _ = datasets(seed=4)
    assert len(train) == 6 * 1437
    for index in (0, 1436, 5000):
        image, target = train[index]
        assert image.shape == (3, CANVAS, CANVAS) and image.dtype == torch.float32
        assert torch.equal(image, again[index][0]) and target == again[index][1]
        assert not torch.equal(image, other_seed[index][0])
    first = train[7][0]
    train.set_epoch(1)
    assert not torch.equal(first, train[7][0]) and train[7][1] == train[7 + 1437][1]  # same digit, new render
    train.set_epoch(0)
    assert torch.equal(first, train[7][0])


def test_validation_set_is_over_10000_images_and_the_same_for_every_run_seed():
    _, val = datasets(seed=0)
    _, val_other_seed = datasets(seed=9)
    assert len(val) == 28 * 360 >= 10_000
    np.testing.assert_array_equal(val.images, val_other_seed.images)
    np.testing.assert_array_equal(val.targets, val_other_seed.targets)
    assert np.bincount(val.targets).min() >= 28 * 35  # every class, stratified
    assert val.scales.shape == (len(val),) and torch.equal(val[5][0], val_other_seed[5][0])
    _, val_other_split = datasets(split_seed=1)
    assert not np.array_equal(val.images, val_other_split.images)


def bounding_side(canvas: np.ndarray) -> int:
    rows, cols = np.nonzero(canvas > 64)
    return max(rows.max() - rows.min(), cols.max() - cols.min()) + 1


def test_scales_span_the_range_log_uniformly_and_the_ink_fills_most_of_each_digit():
    _, val = datasets()
    sides = val.sides
    smallest = RenderConfig().min_scale * CANVAS  # 0.3: 9.6 px
    assert sides.min() == round(smallest) and sides.max() == CANVAS
    median = math.sqrt(smallest * CANVAS)  # log-uniform: the median is the geometric mean of the ends
    assert np.median(sides) == pytest.approx(median, abs=1)
    assert abs(np.mean(sides < median) - 0.5) < 0.03
    ink = np.array([bounding_side(image) for image in val.images[:2000]])
    assert np.all(ink <= sides[:2000]) and np.all(ink >= 0.5 * sides[:2000])
    assert ink.min() <= 12 and ink.max() >= 28


def test_every_digit_lies_whole_inside_the_canvas():
    train, _ = datasets(max_scale=1.0, min_scale=0.125)
    for index in range(0, 1437, 7):
        canvas, side = train.render(index)
        digit = _resized(train.images[index], side, Image.Resampling.BICUBIC)
        assert canvas.sum() == digit.sum() > 0  # not a pixel of the digit was cut off


def test_clutter_adds_fragments_of_other_digits_and_keeps_the_digit():
    spec, cluttered = RenderSpec(48, 0.25, 0.5, 0), RenderSpec(48, 0.25, 0.5, 6)
    train, _ = datasets()
    plain, _ = render(train.images, 3, spec, np.random.default_rng(0))
    noisy, _ = render(train.images, 3, cluttered, np.random.default_rng(0))
    assert noisy.shape == (48, 48) and np.count_nonzero(noisy) > np.count_nonzero(plain)


def test_the_tensors_are_timms_eval_transform_of_the_rgb_render():
    _, eval_transform = build_transforms(data_cfg(), CANVAS)
    _, val = datasets()
    for index in (0, 123):
        expected = eval_transform(Image.fromarray(val.images[index]).convert("RGB"))
        torch.testing.assert_close(GreyToTensor()(val.images[index]), expected, rtol=0, atol=1e-6)


def test_a_resumed_epoch_draws_the_same_renders_in_the_same_order():
    def loader():
        return build_data(data_cfg(limit_train=96), CANVAS, 16, 16, seed=0).train_loader

    batches = ResumableBatches(loader())
    epoch_0 = [images for images, _ in batches.epoch(0)]
    epoch_1 = [images for images, _ in batches.epoch(1)]
    assert not any(torch.equal(a, b) for a, b in zip(epoch_0, epoch_1))
    resumed = ResumableBatches(loader())  # a new process, killed after 2 batches of epoch 1
    resumed.resume_point = {"order": batches.epoch_order, "skip": 2, "rng": capture_rng()}
    again = [images for images, _ in resumed.epoch(1)]
    assert len(again) == len(epoch_1) - 2 and all(torch.equal(a, b) for a, b in zip(again, epoch_1[2:]))


@pytest.mark.parametrize("overrides,message", [
    (dict(min_scale=0.1), r"data.render.min_scale=0.1 on a 32 px canvas draws digits of 3.2 px, under 4 px: set "
                          r"data.render.min_scale >= 0.125 or use a larger canvas"),
    (dict(min_scale=0.6, max_scale=0.5), r"must satisfy 0 < min_scale <= max_scale <= 1"),
    (dict(max_scale=1.5), r"data.render.max_scale=1.5 must satisfy 0 < min_scale <= max_scale <= 1"),
    (dict(min_scale=0.0), r"data.render.min_scale=0.0 and .* must satisfy 0 < min_scale"),
    (dict(clutter=-1), r"data.render.clutter=-1 must be >= 0"),
    (dict(renders_per_digit=0), r"data.render.renders_per_digit=0 must be >= 1"),
    (dict(val_renders_per_digit=0), r"data.render.val_renders_per_digit=0 must be >= 1"),
    (dict(hflip=0.5), r"data.hflip=0.5: multiscale_digits takes no timm augmentation .* set data.hflip=0"),
    (dict(auto_augment="rand-m9"), r"set data.auto_augment=null"),
])
def test_bad_render_settings_name_the_field_and_the_fix(overrides, message):
    with pytest.raises(ValueError, match=message):
        build_data(data_cfg(**overrides), CANVAS, 64, 64, seed=0)


def test_a_patch_size_that_does_not_divide_the_canvas_fails_with_the_model_check():
    cfg = compose_config(["data=multiscale_digits", "model=fusionvit_micro_32", "model.img_size=30"])
    with pytest.raises(ValueError, match=r"patch size 4 does not divide image size 30 .* pick a patch size from "
                                         r"1, 2, 3, 5, 6, 10, 15, 30 or change img_size"):
        build_model(cfg)


@pytest.mark.slow
def test_one_epoch_run_on_micro_32_completes_with_predictions_in_the_val_order(tmp_path):
    run_dir = tmp_path / "run"
    done = run_module("src.run", "data=multiscale_digits", "model=fusionvit_micro_32", "train.epochs=1",
                      "data.limit_train=128", "data.limit_val=200", "train.batch_size=32", "train.threads=1",
                      "logger=none", f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "completed" and results["choices"]["data"] == "multiscale_digits"
    _, val = datasets()
    with np.load(run_dir / "val_predictions.npz") as saved:
        np.testing.assert_array_equal(saved["target"], val.targets[:200])
