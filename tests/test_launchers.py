"""hydra-submitit-launcher configs: ``hydra/launcher=local`` runs a real two-job sweep through submitit;
``hydra/launcher=slurm`` composes against the plugin's dataclass, every key overridable, typos rejected."""
import json
import subprocess

import pytest
import yaml
from conftest import run_module


def run(*args: str) -> subprocess.CompletedProcess:
    return run_module("src.run", *args, merge_stderr=True)


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
