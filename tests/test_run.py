"""``python -m src.run`` end to end: real one-epoch runs, a real multirun, W&B offline, reproducibility, and
every bad input failing before training with a message that names the fix."""
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from src.identity import config_hash
from src.train.loop import train
from src.train.record import EpochRow, RunRecord
from src.train.wandb_logger import WandbLogger

from conftest import compose_config, run_module

TINY = ["train.epochs=1", "data.limit_train=128", "data.limit_val=64", "train.batch_size=32"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return run_module("src.run", *args)


def read(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def assert_predictions_match(run_dir: Path, results: dict) -> None:
    """val_predictions.npz holds the per-image predictions the final top-1 and branch top-1 were computed from."""
    with np.load(run_dir / "val_predictions.npz") as saved:
        target, pred, pred_branch = saved["target"], saved["pred"], saved["pred_branch"]
    assert target.dtype == pred.dtype == pred_branch.dtype == np.int64
    assert pred.shape == target.shape and pred_branch.shape == (2, *target.shape)
    assert (pred == target).mean() * 100 == pytest.approx(results["final"]["top1"], abs=1e-6)
    for branch, top1 in zip(pred_branch, results["final"]["top1_branch"]):
        assert (branch == target).mean() * 100 == pytest.approx(top1, abs=1e-6)


def assert_complete(results: dict, run_dir: Path) -> None:
    assert results["status"] == "completed", results["reason"]
    assert set(results) == set(RunRecord.__annotations__) and results["schema"] == 1 and results["reason"] is None
    assert results["config_hash"] == config_hash(results["config"])
    assert results["params_m"] > 0.1 and 0 < results["fusion_params_m"] < results["params_m"]
    assert 0 < results["fusion_gmacs"] < results["gmacs"]
    assert set(results["final"]) == {"top1", "top5", "loss", "top1_branch"} and 0 <= results["final"]["top1"] <= 100
    assert len(results["final"]["top1_branch"]) == 2 and all(0 <= t <= 100 for t in results["final"]["top1_branch"])
    assert results["best"]["top1_branch"] == results["history"][0]["top1_branch"] == results["final"]["top1_branch"]
    assert_predictions_match(run_dir, results)
    assert results["best"]["epoch"] == 0 and len(results["history"]) == 1
    assert EpochRow.__required_keys__ <= set(results["history"][0]) <= set(EpochRow.__annotations__)
    assert Path(results["run_dir"]) == run_dir.resolve() and results["wall_time_s"] > 0
    assert results["model"]["name"] == "fusionvit_micro_16" and results["model"]["img_size"] == 16
    assert results["data_sizes"] == {"num_train": 128, "num_val": 64}  # TINY's limits: what the flags judge by


@pytest.mark.slow
@pytest.mark.parametrize("data", ["digits", "synthetic"])
def test_one_epoch_run_writes_results_and_an_offline_wandb_run(tmp_path, data):
    run_dir = tmp_path / "run"
    done = run_cli(f"data={data}", "fusion=all_attn", *TINY, "logger.mode=offline", f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    results = read(run_dir)
    assert_complete(results, run_dir)
    assert results["choices"]["data"] == data and results["choices"]["fusion"] == "all_attn"
    assert "fusion=all_attn" in results["overrides"]
    assert results["wandb"]["mode"] == "offline"
    wandb_files = list(run_dir.glob(f"wandb/offline-run-*/run-{results['wandb']['run_id']}.wandb"))
    assert len(wandb_files) == 1 and wandb_files[0].stat().st_size > 0


@pytest.mark.slow
def test_multirun_over_two_fusions_and_a_failing_job_does_not_end_it(tmp_path):
    sweep = tmp_path / "sweep"
    done = run_cli("-m", "data=synthetic", "logger=none", "fusion=none,cross", "model.patch_size=[4,8],[5,8]",
                   *TINY, f"hydra.sweep.dir={sweep}")
    assert done.returncode == 1, done.stderr[-3000:]  # every job ran; the exit status says two failed
    assert "sweep FAILED: 2 done, 2 failed of 4 jobs" in done.stdout
    runs = [read(sweep / str(job)) for job in range(4)]
    completed = [(r["choices"]["fusion"], r["config"]["model"]["patch_size"]) for r in runs
                 if r["status"] == "completed"]
    assert sorted(completed) == [("cross", [4, 8]), ("none", [4, 8])]
    failed = [r for r in runs if r["status"] == "failed"]
    assert len(failed) == 2 and all("patch size 5 does not divide image size 16" in r["reason"] for r in failed)
    assert all(r["history"] == [] and r["final"] is None for r in failed)


@pytest.mark.slow
def test_a_failing_single_run_exits_1_with_the_reason_and_no_training(tmp_path):
    run_dir = tmp_path / "run"
    done = run_cli("logger=none", "train.batch_size=0", f"hydra.run.dir={run_dir}")
    assert done.returncode == 1
    assert "train.batch_size=0: must be >= 1" in done.stderr + done.stdout
    assert not (run_dir / "results.json").exists()  # refused before any work (tests/test_bad_inputs.py)


def test_an_unknown_group_option_is_refused_with_the_known_ones():
    done = run_cli("fusion=crosss")
    assert done.returncode == 2  # a usage error
    assert "Could not find 'fusion/crosss'" in done.stderr and "cls_token" in done.stderr


def compose_tiny(overrides):
    return compose_config(["logger=none", *TINY, *overrides])


def train_in_process(tmp_path, overrides) -> dict:
    return train(compose_tiny(overrides), tmp_path, {}, {}, None, "test")


def strip_timings(history):
    return [{k: v for k, v in row.items() if k not in ("epoch_time_s", "images_per_s", "data_wait_frac")}
            for row in history]


@pytest.mark.slow
def test_same_seed_twice_gives_identical_metrics(tmp_path):
    # digits with random-resized crops and label smoothing: the seed must fix augmentation, init and order
    first = train_in_process(tmp_path / "a", ["seed=5"])
    second = train_in_process(tmp_path / "b", ["seed=5"])
    other = train_in_process(tmp_path / "c", ["seed=6"])
    assert strip_timings(first["history"]) == strip_timings(second["history"])
    assert strip_timings(first["history"]) != strip_timings(other["history"])


@pytest.mark.parametrize("override,message", [
    ("model.patch_size=[12,8]", r"patch size 12 does not divide image size 16"),
    ("model.embed_dim=[50,96]", r"width 50 of branch 0 is not divisible by its 3 heads"),
    ("model.embed_dim=[48,96,96]", r"model.embed_dim has 3 entries but model.patch_size has 2: give one per branch"),
    ("train.batch_size=0", r"train.batch_size=0 .* must be >= 1"),
    ("data.num_classes=7", r"data.num_classes=7 but digits has 10 classes: set data.num_classes=10"),
    ("data=cifar10", r"cifar10 not found: looked for .*data/cifar10/cifar-10-batches-py"),
    ("data.image_size=64", r"data.image_size=64 but fusionvit_micro_16 takes 16x16"),
    ("data.num_workers=-1", r"data.num_workers=-1: use 0 \(load in the training process\)"),
    ("train.amp=bf16", r"train.amp=bf16 needs CUDA" if not __import__("torch").cuda.is_available() else "$^"),
])
def test_bad_input_fails_before_training_and_names_the_fix(tmp_path, override, message):
    if message == "$^":
        pytest.skip("CUDA present: bf16 is valid here")
    results = {}
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        train(compose_tiny([override]), tmp_path, results, {}, None, "test")
    assert not results.get("history")


def test_online_without_an_api_key_falls_back_to_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, so no key
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = compose_tiny(["logger=wandb", "logger.mode=online", "logger.init_timeout=10"])
    with pytest.warns(UserWarning, match="W&B online start failed"):
        logger = WandbLogger(cfg.logger, tmp_path, {"fusion": "cross"}, None, "fallback")
    try:
        assert logger.mode == "offline" and logger.info["mode"] == "offline"
        logger.log_step({"train/loss": 1.0}, step=1)
    finally:
        logger.finish()
    assert list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))


@pytest.mark.slow
def test_online_with_a_key_but_no_server_falls_back_to_offline_within_the_timeout(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = compose_tiny(["logger=wandb", "logger.mode=online", "logger.init_timeout=5"])
    started = time.perf_counter()
    with pytest.warns(UserWarning, match=r"(?s)W&B online start failed .*trying offline"):
        logger = WandbLogger(cfg.logger, tmp_path, {}, None, "no-server")
    logger.finish()
    assert logger.mode == "offline" and time.perf_counter() - started < 60


def test_the_optional_recipe_pieces_run_together(tmp_path):
    # EMA, repeated augmentation, gradient clipping, mixup + cutmix with soft targets, the step schedule
    results = train_in_process(tmp_path, ["data=synthetic", "train.ema=true", "data.repeated_aug=true",
                                          "optim.clip_grad=1.0", "data.mixup=0.8", "data.cutmix=1.0",
                                          "data.smoothing=0.1", "sched=step", "optim=sgd"])
    assert results["status"] == "completed"
    assert 0 <= results["history"][0]["ema_top1"] <= 100


def test_each_branch_top1_is_logged_to_wandb_every_epoch():
    from src.train.loop import log_epoch

    logged = []
    logger = type("Recorder", (), {"log_step": lambda self, metrics, step: logged.append(metrics)})()
    row = {"epoch": 2, "train_loss": 1.0, "val_loss": 0.9, "top1": 70.0, "top5": 95.0, "top1_branch": [40.0, 65.5],
           "epoch_time_s": 1.0, "images_per_s": 10.0, "data_wait_frac": 0.05}
    log_epoch(logger, row, num_epochs=3, step=30)
    assert logged[0]["val/top1_branch0"] == 40.0 and logged[0]["val/top1_branch1"] == 65.5
