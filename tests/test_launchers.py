"""The launchers: ``hydra/launcher=parallel`` (hydra-joblib-launcher) gives every job the numbers the basic
launcher gives it, and a job run after others in a reused process the numbers of a fresh process;
``hydra/launcher=local`` runs a real two-job sweep through submitit; ``hydra/launcher=slurm`` composes against the
plugin's dataclass, every key overridable, typos rejected."""
import json
import signal
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from src.train.process import DEFAULT_THREADS, StopFlag, isolated_job, set_threads

from conftest import compose_config, run_module

TINY_SWEEP = ["+experiment=smoke", "train.epochs=2", "train.threads=1"]  # 4 steps an epoch on synthetic images


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return run_module("src.run", *args, merge_stderr=True, **env)


def read_sweep(sweep_dir: Path) -> dict:
    """Each job's results.json by its folder name."""
    return {path.parent.name: json.loads(path.read_text()) for path in sweep_dir.glob("*/results.json")}


def epochs(results: dict) -> list:
    """The per-epoch numbers a job's results must reproduce exactly."""
    return [(row["train_loss"], row["val_loss"], row["top1"], row["top5"]) for row in results["history"]]


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> dict:
    """The reference: a sweep through the basic launcher, one job after another; (fusion, seed) -> results."""
    sweep = tmp_path_factory.mktemp("serial")
    done = run("-m", *TINY_SWEEP, "fusion=cross,none", "seed=0,1", f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stdout[-3000:]
    return {(r["choices"]["fusion"], r["seed"]): r for r in read_sweep(sweep).values()}


@pytest.mark.slow
def test_parallel_launcher_gives_each_job_the_serial_numbers_exactly(tmp_path, serial):
    """Two workers, four jobs in the reverse order: each job runs beside another and the workers are reused, so a
    job that ran first in the serial process runs after another here, and the other way round."""
    done = run("-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", *TINY_SWEEP, "fusion=none,cross",
               "seed=1,0", f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 0, done.stdout[-3000:]
    assert "LokyBackend with 2 concurrent workers" in done.stdout
    parallel = {(r["choices"]["fusion"], r["seed"]): r for r in read_sweep(tmp_path).values()}
    assert set(parallel) == set(serial) == {("none", 0), ("none", 1), ("cross", 0), ("cross", 1)}
    for job, results in parallel.items():
        assert results["status"] == "completed" and results["provenance"]["threads"] == 1
        assert len(results["history"]) == 2 and epochs(results) == epochs(serial[job]), job


@pytest.mark.slow
def test_reused_process_gives_the_numbers_of_a_fresh_one(tmp_path, serial):
    """``n_jobs=1``: joblib runs the jobs one after another in the Hydra process. Job 0 is already completed in
    its folder (skipped), jobs 1-2 fail (an image size the model does not take) after setting their threads, job 4
    runs on 2 threads, and job 5 (train.threads=null: the process's default, 1 under OMP_NUM_THREADS=1) must
    still give the numbers of the serial sweep's first job, which ran in a fresh process; W&B starts a new run for
    every job."""
    grid = [*TINY_SWEEP[:2], "fusion=cross", "seed=0", "logger=wandb", "logger.mode=offline"]
    skipped = compose_config([*grid, "data.image_size=16", "train.threads=1"])
    marker = {"status": "completed", "config": OmegaConf.to_container(skipped, resolve=True), "note": "kept",
              "history": [{"epoch": 0}]}  # a completed record holds its history
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "results.json").write_text(json.dumps(marker))
    done = run("-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=1", *grid, "data.image_size=16,null",
               "train.threads=1,2,null", f"hydra.sweep.dir={tmp_path}", OMP_NUM_THREADS="1")
    assert done.returncode == 1, done.stdout[-3000:]  # its two failed jobs: the sweep says so
    assert "sweep FAILED: 3 done, 1 skipped, 2 failed of 6 jobs" in done.stdout
    jobs = read_sweep(tmp_path)
    assert jobs["0"] == marker and "already completed" in done.stdout
    for failed in ("1", "2"):
        assert jobs[failed]["status"] == "failed" and "data.image_size=16" in jobs[failed]["reason"]
    assert [jobs[job]["provenance"]["threads"] for job in "345"] == [1, 2, 1]
    assert epochs(jobs["5"]) == epochs(jobs["3"]) == epochs(serial[("cross", 0)])
    run_ids = [jobs[job]["wandb"]["run_id"] for job in "345"]
    assert len(set(run_ids)) == 3
    for job, run_id in zip("345", run_ids):
        assert len(list((tmp_path / job).glob(f"wandb/offline-run-*/run-{run_id}.wandb"))) == 1


def test_a_job_leaves_no_signal_handler_or_thread_count_to_the_next():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with isolated_job():
        StopFlag()  # a job that failed before closing its flag
        set_threads(DEFAULT_THREADS + 1)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    set_threads(None)  # the next job, train.threads=null
    assert torch.get_num_threads() == DEFAULT_THREADS


@pytest.mark.slow
def test_submitit_local_two_job_sweep(tmp_path):
    done = run("-m", "hydra/launcher=local", "+experiment=smoke", "train.threads=1", "fusion=none,cross",
               f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 0, done.stdout[-3000:]
    assert "Submitit 'local' sweep" in done.stdout
    records = [json.loads((tmp_path / job / "results.json").read_text()) for job in "01"]
    assert [r["status"] for r in records] == ["completed", "completed"]
    assert [r["choices"]["fusion"] for r in records] == ["none", "cross"]
    assert all((tmp_path / job / "last.pt").exists() for job in "01")
    assert list((tmp_path / ".submitit").iterdir())  # the jobs really went through submitit


def test_slurm_launcher_config_is_complete_and_overridable():
    done = run("hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=4",
               "hydra.launcher.timeout_min=30", "hydra.launcher.max_num_timeout=5", "--cfg", "hydra",
               "-p", "hydra.launcher")
    assert done.returncode == 0, done.stdout[-3000:]
    launcher = yaml.safe_load(done.stdout)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["partition"], launcher["gpus_per_node"], launcher["timeout_min"]) == ("gpu", 4, 30)
    assert launcher["max_num_timeout"] == 5 and launcher["additional_parameters"] == {"requeue": True}


def test_slurm_launcher_key_typo_is_an_error():
    done = run("hydra/launcher=slurm", "hydra.launcher.gpu_per_node=4", "--cfg", "hydra")
    assert done.returncode != 0
    assert "gpu_per_node" in done.stdout
