"""The trail that needs no W&B: metrics.csv and TensorBoard read back (tensorboard's own EventAccumulator),
provenance in results.json, and collate's warning when a table pools runs from different devices or threads."""
import csv
import json

import pandas as pd
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from analysis.runs.local import load_runs
from analysis.runs.records import warn_mixed_provenance
from src.train.loop import train
from src.train.record import PROVENANCE_KEYS

from conftest import compose_config

TINY = ["data=synthetic", "data.num_train=64", "data.num_val=32", "train.batch_size=16", "train.epochs=2",
        "logger.log_every_n_steps=2"]


@pytest.fixture(scope="module")
def tensorboard_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tensorboard")
    results = {"config_hash": "h", "choices": {}}
    train(compose_config(["logger=tensorboard", *TINY]), run_dir, results, {}, None, "tb")
    return run_dir, results


def test_tensorboard_events_hold_every_epoch_and_logged_step(tensorboard_run):
    run_dir, results = tensorboard_run
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    top1 = [(event.step, event.value) for event in events.Scalars("val/top1")]
    assert [value for _, value in top1] == pytest.approx([row["top1"] for row in results["history"]])
    assert [step for step, _ in top1] == [4, 8]  # 64 images / batch 16: 4 steps an epoch
    assert [event.step for event in events.Scalars("train/loss")] == [2, 4, 6, 8]
    assert not list(run_dir.glob("wandb"))  # logger=tensorboard: no W&B


def test_metrics_csv_has_one_row_per_logged_step_and_per_epoch(tensorboard_run):
    run_dir, results = tensorboard_run
    with open(run_dir / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(row["kind"], int(row["step"])) for row in rows] == [
        ("step", 2), ("step", 4), ("epoch", 4), ("step", 6), ("step", 8), ("epoch", 8)]
    epochs = [row for row in rows if row["kind"] == "epoch"]
    assert [float(row["val/top1"]) for row in epochs] == [row["top1"] for row in results["history"]]
    assert all(float(row["train/loss"]) > 0 for row in rows if row["kind"] == "step")


def test_provenance_has_exactly_its_keys(tensorboard_run):
    provenance = tensorboard_run[1]["provenance"]
    assert tuple(provenance) == PROVENANCE_KEYS and provenance["threads"] == torch.get_num_threads()
    assert provenance["peak_memory_mb"] > 0
    # the CPU's vector ISA, which changes the numbers as the thread count does (AVX2 and AVX-512 sum differently)
    assert provenance["device"].endswith(f" ({torch.backends.cpu.get_cpu_capability()})")


def test_collate_warns_when_it_pools_runs_from_different_thread_counts(tensorboard_run, tmp_path):
    _, results = tensorboard_run
    for seed, threads in ((0, 1), (1, 2)):
        payload = json.loads(json.dumps(results, default=str))
        payload.update(schema=1, status="completed", reason=None, config={"seed": seed}, seed=seed, overrides=[],
                       config_hash=f"h{seed}", run_dir=str(tmp_path / str(seed)))
        payload["provenance"]["threads"] = threads
        (tmp_path / str(seed)).mkdir()
        (tmp_path / str(seed) / "results.json").write_text(json.dumps(payload))
    warnings = []
    load_runs([tmp_path], warn=warnings.append)
    assert len(warnings) == 1 and "different thread counts: 1 (1 runs), 2 (1 runs)" in warnings[0]


def test_collate_says_whether_each_seed_kept_to_one_device():
    """Two machines, each running whole seeds (a design blocked by seed): the warning says the seed-paired
    differences stay within a machine; runs of one seed split over the machines get the plain warning."""
    blocked = pd.DataFrame({"seed": [0, 0, 1, 1], "device": ["A", "A", "B", "B"], "threads": [1] * 4})
    warnings = []
    warn_mixed_provenance(blocked, warnings.append)
    assert len(warnings) == 1 and "A (2 runs), B (2 runs); each seed's runs share one device, so" in warnings[0]
    warnings.clear()
    warn_mixed_provenance(blocked.assign(device=["A", "B", "A", "B"]), warnings.append)
    assert len(warnings) == 1 and "A (2 runs), B (2 runs); results can differ" in warnings[0]
