"""SLURM: each task of a job step is one DDP rank (SLURM's variables become torchrun's), two tasks give the numbers
of one process on the same global batch, SIGUSR2 (submitit's warning before the time limit) saves a mid-epoch
checkpoint like SIGTERM, and a sweep whose SLURM job was stopped exits non-zero instead of reporting it done.
These run the tasks as srun would start them (the same variables); tests/test_slurm_cluster.py runs them on a real
SLURM."""
import json
import os
import signal
import socket
import subprocess
import time

import pytest
import torch

from src.train import distributed
from src.train.loop import train
from src.train.process import StopFlag

from conftest import PATIENCE_S, ROOT, cli_env, command, compose_config, wait_for

SETTING = ["data=synthetic", "data.num_train=96", "data.num_val=64", "train.batch_size=64", "train.epochs=2",
           "logger=none", "train.progress=log", "train.threads=1", "optim.lr=3e-3"]
SLURM_KEYS = ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "SLURM_LOCALID",
              "SLURM_JOB_NODELIST", "SLURM_JOB_NUM_NODES", "SLURM_NODEID", "RANK", "WORLD_SIZE", "LOCAL_RANK",
              "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def slurm_task(rank: int, tasks: int, nodes: str = "127.0.0.1", job: str = "4242", per_node: int = 0) -> dict:
    """The variables srun gives task ``rank`` of a step of ``tasks`` on one node (or ``per_node`` a node)."""
    per_node = per_node or tasks
    return {"SLURM_JOB_ID": job, "SLURM_NTASKS": str(tasks), "SLURM_STEP_NUM_TASKS": str(tasks),
            "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank % per_node), "SLURM_JOB_NODELIST": nodes,
            "SLURM_JOB_NUM_NODES": str(tasks // per_node), "SLURM_NODEID": str(rank // per_node)}


@pytest.fixture
def clean_env(monkeypatch):
    """No SLURM or torchrun variables, and those ``export_slurm_ranks`` sets are taken back after the test."""
    saved = dict(os.environ)
    for key in SLURM_KEYS:
        monkeypatch.delenv(key, raising=False)
    yield monkeypatch
    os.environ.clear()
    os.environ.update(saved)


def test_a_step_of_several_tasks_gets_torchruns_variables_and_one_task_or_a_batch_script_none(clean_env):
    assert not distributed.launched_by_slurm()
    for key, value in slurm_task(0, 1).items():  # a batch script or a one-task step: not distributed
        clean_env.setenv(key, value)
    assert not distributed.launched_by_slurm()
    for key, value in slurm_task(3, 4, nodes="gpu[07-08]", per_node=2).items():
        clean_env.setenv(key, value)
    assert distributed.launched_by_slurm()
    distributed.export_slurm_ranks()
    exported = {key: os.environ[key] for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                                                  "MASTER_ADDR")}
    assert exported == {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                        "MASTER_ADDR": "gpu07"}
    port = os.environ["MASTER_PORT"]
    clean_env.delenv("MASTER_PORT")
    distributed.export_slurm_ranks()
    assert os.environ["MASTER_PORT"] == port and 20000 <= int(port) <= 60000  # from the job id: every task agrees


def test_tasks_per_node_must_equal_the_gpus_per_node():
    distributed.check_one_rank_per_gpu(4, 4)
    with pytest.raises(ValueError, match=r"2 SLURM task\(s\) on a node with 4 GPU\(s\): .* set "
                                         r"hydra.launcher.tasks_per_node=hydra.launcher.gpus_per_node"):
        distributed.check_one_rank_per_gpu(2, 4)


def test_sigusr2_is_a_stop_request_like_sigterm():
    before = signal.getsignal(signal.SIGUSR2)  # SIG_DFL, or what an earlier test in this worker left
    flag = StopFlag()
    try:
        os.kill(os.getpid(), signal.SIGUSR2)
        time.sleep(0.05)
        assert flag.requested and flag.signal_name == "SIGUSR2"
    finally:
        flag.close()
    assert signal.getsignal(signal.SIGUSR2) is before  # restored


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # two training processes
def test_two_tasks_started_as_srun_starts_them_are_one_ddp_job_with_the_numbers_of_one_process(tmp_path):
    port = str(free_port())
    processes = []
    for rank in range(2):
        env = cli_env(OMP_NUM_THREADS="1", MASTER_PORT=port, **slurm_task(rank, 2))
        for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
            env.pop(key, None)
        processes.append(subprocess.Popen(command("src.run", *SETTING, f"hydra.run.dir={tmp_path}"), cwd=ROOT,
                                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert "DDP: rank 0 of 2, backend gloo" in outputs[0]
    assert sum(output.count("done: top-1") for output in outputs) == 1  # one writer, one log
    ddp = json.loads((tmp_path / "results.json").read_text())
    single = train(compose_config(SETTING), tmp_path / "single", {"config_hash": "h", "choices": {}}, {}, None, "s")
    for got, expected in zip(ddp["history"], single["history"], strict=True):
        assert (got["train_loss"], got["val_loss"], got["top1"]) == pytest.approx(
            (expected["train_loss"], expected["val_loss"], expected["top1"]), rel=1e-4, abs=1e-4)


@pytest.mark.slow  # a sweep stopped mid-epoch, then run again
def test_a_slurm_sweep_job_stopped_by_sigusr2_saves_mid_epoch_exits_nonzero_and_resumes(tmp_path):
    sweep = ["-m", "+experiment=smoke", "data.num_train=768", "data.num_val=64", "train.epochs=2", "train.threads=1",
             "logger=none", f"hydra.sweep.dir={tmp_path}", "hydra.sweep.subdir=job"]
    env = cli_env(SLURM_JOB_ID="4242")  # a job of a SLURM sweep (submitit's launcher runs the same run_job)
    process = subprocess.Popen(command("src.run", *sweep), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    wait_for((tmp_path / "job" / "last.pt").exists, "the first epoch's last.pt", process, poll_s=0.02)
    time.sleep(0.5)
    process.send_signal(signal.SIGUSR2)
    output, _ = process.communicate(timeout=PATIENCE_S)
    assert process.returncode != 0, output[-3000:]
    assert "SLURM resumes a requeued job" in output and "Run the same sweep again" in output
    record = json.loads((tmp_path / "job" / "results.json").read_text())
    assert record["status"] == "interrupted" and record["reason"].startswith("SIGUSR2 at epoch 2/")
    assert 0 < torch.load(tmp_path / "job" / "last.pt", weights_only=True)["batches_done"] < 48
    again = subprocess.run(command("src.run", *sweep), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=300)
    assert again.returncode == 0 and "resumed from" in again.stdout, again.stdout[-3000:]
    assert json.loads((tmp_path / "job" / "results.json").read_text())["status"] == "completed"


def test_the_sweep_stamp_is_now_or_the_one_rank_0_shared(clean_env):
    from src.config import SWEEP_STAMP_ENV, sweep_stamp

    clean_env.delenv(SWEEP_STAMP_ENV, raising=False)
    assert len(sweep_stamp().split("/")) == 2 and sweep_stamp() != sweep_stamp()  # microseconds apart
    clean_env.setenv(SWEEP_STAMP_ENV, "2026-12-02/08-00-00-000001")
    assert sweep_stamp() == "2026-12-02/08-00-00-000001"
