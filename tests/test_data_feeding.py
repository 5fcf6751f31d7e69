"""Feeding the model: every run reports the share of its step time spent waiting for data (per epoch in
results.json and metrics.csv, per logged step in metrics.csv and W&B) and warns when an epoch is loader-bound;
``data.num_workers=null`` picks the workers from the CPUs this rank has; ``DeviceBatches`` normalises uint8 batches
exactly as timm's own eval transform does, and on the CPU hands the loader's batches through untouched."""
import csv
import logging
import time

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data.auto_augment import posterize

from src.data import MAX_AUTO_WORKERS, build_transforms, device_batches, resolve_workers
from src.data.posterize import posterize_zero_bits_black
from src.data.prefetch import DeviceBatches
from src.data.synthetic import SyntheticDataset
from src.train.engine import DATA_WAIT_WARNING, EpochMeter
from src.train.loop import train

from conftest import compose_config

TINY = ["data=synthetic", "data.num_train=64", "data.num_val=32", "train.batch_size=16", "train.epochs=2",
        "logger=none", "logger.log_every_n_steps=2", "train.progress=log"]
CUDA = torch.device("cuda")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def fed_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("fed")
    results = train(compose_config(TINY), run_dir, {"config_hash": "h", "choices": {}}, {}, None, "fed")
    with open(run_dir / "metrics.csv", newline="") as file:
        return results, list(csv.DictReader(file))


def test_every_epoch_and_logged_step_reports_its_data_wait(fed_run):
    results, rows = fed_run
    shares = [row["data_wait_frac"] for row in results["history"]]
    assert len(shares) == 2 and all(0 <= share < 1 for share in shares)
    epochs = [row for row in rows if row["kind"] == "epoch"]
    assert [float(row["train/epoch_data_wait_frac"]) for row in epochs] == pytest.approx(shares)
    steps = [float(row["train/data_wait_frac"]) for row in rows if row["kind"] == "step"]
    assert len(steps) == 4 and all(0 <= share < 1 for share in steps)


def test_a_loader_bound_run_is_measured_as_such_and_the_log_names_the_workers(tmp_path, monkeypatch, caplog):
    fetch = SyntheticDataset.__getitem__

    def slow(self, index):
        time.sleep(0.012)  # 190 ms a batch of 16: far longer than micro_16's step on 16 images, even on a busy machine
        return fetch(self, index)

    monkeypatch.setattr(SyntheticDataset, "__getitem__", slow)
    with caplog.at_level(logging.WARNING, logger="src.train.loop"):
        results = train(compose_config(TINY), tmp_path, {"config_hash": "h", "choices": {}}, {}, None, "slow")
    assert all(row["data_wait_frac"] > 0.5 for row in results["history"])
    warnings = [record.getMessage() for record in caplog.records if "waiting for data" in record.getMessage()]
    assert len(warnings) == 1 and "raise data.num_workers (now 0)" in warnings[0]  # once a launch, not per epoch
    assert warnings[0].startswith("epoch 1 spent ")
    assert DATA_WAIT_WARNING == 0.10


def test_the_meter_divides_wait_by_step_time_over_the_epoch_and_over_each_logged_window():
    meter = EpochMeter()
    meter.add_step(1.0, 4.0)
    meter.add_step(0.0, 4.0)
    assert meter.window_data_wait_frac() == pytest.approx(1 / 8)  # a logged step: the window of the first two
    meter.add_step(3.0, 4.0)
    assert meter.window_data_wait_frac() == pytest.approx(3 / 4)  # the next window: the third step alone
    assert meter.data_wait_frac() == pytest.approx(4 / 12)
    assert EpochMeter().data_wait_frac() == 0.0


def test_auto_workers_are_zero_on_the_cpu_and_the_ranks_cpus_but_one_on_cuda(monkeypatch):
    assert resolve_workers(None, CPU) == 0 and resolve_workers(3, CPU) == 3 and resolve_workers(0, CUDA) == 0
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "6")
    assert resolve_workers(None, CUDA) == 5
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # torchrun, 8 ranks on this node: 8 CPUs each
    assert resolve_workers(None, CUDA) == 7
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert resolve_workers(None, CUDA) == MAX_AUTO_WORKERS
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    assert resolve_workers(None, CUDA) == 1  # one CPU: still one worker, so the GPU is fed off the main process
    with pytest.raises(ValueError, match=r"data.num_workers=-1: use 0 .* or null \(auto"):
        resolve_workers(-1, CPU)


def test_device_side_normalisation_equals_timms_eval_transform():
    data_cfg = compose_config(["data=imagenet"]).data
    image = Image.fromarray((np.random.default_rng(0).random((300, 400, 3)) * 255).astype(np.uint8))
    _, on_host = build_transforms(data_cfg, 240)
    _, to_uint8 = build_transforms(data_cfg, 240, prefetch=True)
    raw = to_uint8(image)
    assert raw.dtype == torch.uint8 and raw.shape == (3, 240, 240)
    normalised = DeviceBatches(CPU, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)).normalise(raw[None])
    assert torch.allclose(normalised[0], on_host(image), atol=1e-5)


def test_the_prefetch_train_pipeline_leaves_normalising_and_erasing_to_the_device():
    data_cfg = compose_config(["data=imagenet"]).data
    train_on_host, _ = build_transforms(data_cfg, 240)
    train_uint8, _ = build_transforms(data_cfg, 240, prefetch=True)
    names = [type(step).__name__ for step in train_uint8.transforms]
    assert "Normalize" not in names and "RandomErasing" not in names and names[-1] == "MaybePILToTensor"
    assert [type(step).__name__ for step in train_on_host.transforms][-2:] == ["Normalize", "RandomErasing"]


def test_on_the_cpu_the_loaders_batches_pass_through_untouched():
    train_to_device, val_to_device = device_batches(compose_config(["data=imagenet"]).data, CPU)
    assert train_to_device.erasing is None and not train_to_device.prefetches
    batches = [(torch.rand(2, 3, 4, 4), torch.tensor([0, 1])) for _ in range(3)]
    for wrapped in (train_to_device, val_to_device):
        assert all(got is sent for got, sent in zip(wrapped(iter(batches)), batches))


def test_randaugments_zero_bit_posterize_is_pillow_12s_black_image_and_other_counts_are_timms():
    """timm's RandAugment asks for 0 bits at magnitude 10 (1 image in ~700 under rand-m9-mstd0.5-inc1): Pillow 13
    raises there, Pillow 12 (what DeiT trained with) gave black; the harness's train pipeline gives black."""
    train, _ = build_transforms(compose_config(["data=imagenet"]).data, 240)
    ops = [op for step in train.transforms for op in getattr(step, "ops", []) if "Posterize" in op.name]
    assert [op.aug_fn for op in ops] == [posterize_zero_bits_black]
    image = Image.fromarray((np.random.default_rng(1).random((8, 8, 3)) * 255).astype(np.uint8))
    (op,) = ops
    op.prob, op.magnitude, op.magnitude_std = 1.0, 10, 0  # the draw that asks for 0 bits
    assert np.asarray(op(image)).max() == 0 and op(image).size == image.size
    for bits in range(1, 9):
        assert np.array_equal(np.asarray(posterize_zero_bits_black(image, bits)), np.asarray(posterize(image, bits)))
    try:
        assert np.asarray(posterize(image, 0)).max() == 0  # Pillow <= 12: black, the same
    except ValueError as error:  # Pillow 13: what the fix is for
        assert "bits must be between" in str(error)
