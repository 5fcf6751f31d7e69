"""Against a real SLURM (Debian's slurm-wlm 22.05 and munge, one node, brought up by tests/slurm_cluster.py; .ci/run
installs them when CI runs as root, and then a missing cluster fails these tests instead of skipping them):

- a job of 2 tasks through ``hydra/launcher=slurm`` is one 2-rank DDP run, with torchrun's numbers and one writer;
- ``scontrol requeue`` in the middle of a job: the job saves a mid-epoch checkpoint, its sweep exits non-zero
  saying the job was stopped, and the requeued job resumes and ends with the numbers of an uninterrupted run;
- a sweep with a failed job exits non-zero after its closing table, as on the other launchers."""
import json
import os
import re
import subprocess
import time

import pytest
import slurm_cluster

from conftest import PATIENCE_S, ROOT, cli_env, command, run_module, wait_for

pytestmark = pytest.mark.slow
RUN = ["data=synthetic", "data.num_train=96", "data.num_val=64", "train.batch_size=64", "train.epochs=2",
       "logger=none", "train.progress=log", "train.threads=1", "optim.lr=3e-3"]
LAUNCHER = ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=10"]


@pytest.fixture(scope="module", autouse=True)
def cluster():
    why = slurm_cluster.unavailable()
    if why:
        if os.environ.get("FUSIONVIT_REQUIRE_SLURM") == "1":
            pytest.fail(f"FUSIONVIT_REQUIRE_SLURM=1 but {why}")
        pytest.skip(why)
    try:
        slurm_cluster.bring_up()
    except (OSError, RuntimeError, subprocess.CalledProcessError) as error:
        if os.environ.get("FUSIONVIT_REQUIRE_SLURM") == "1":
            raise
        pytest.skip(f"SLURM did not come up here: {error}")


def sweep(sweep_dir, *overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return run_module("src.run", "-m", *LAUNCHER, f"hydra.sweep.dir={sweep_dir}", "hydra.sweep.subdir=job",
                      *overrides, merge_stderr=True, timeout=timeout)


def pending(job_id: str) -> bool:
    state = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], stdout=subprocess.PIPE, text=True).stdout
    return state.strip() == "PENDING"


def epochs(results: dict) -> list:
    return [(row["train_loss"], row["val_loss"], row["top1"]) for row in results["history"]]


def test_a_two_task_job_is_one_ddp_run_with_torchruns_numbers_and_one_writer(tmp_path):
    done = sweep(tmp_path / "slurm", "hydra.launcher.tasks_per_node=2", *RUN)
    assert done.returncode == 0, done.stdout[-3000:]
    job = tmp_path / "slurm" / "job"
    slurm = json.loads((job / "results.json").read_text())
    torchrun = run_module("torch.distributed.run", "--nproc_per_node=2", "-m", "src.run", *RUN,
                          f"hydra.run.dir={tmp_path / 'torchrun'}", merge_stderr=True, OMP_NUM_THREADS="1")
    assert torchrun.returncode == 0, torchrun.stdout[-3000:]
    reference = json.loads((tmp_path / "torchrun" / "results.json").read_text())
    assert slurm["status"] == "completed"
    for got, expected in zip(epochs(slurm), epochs(reference), strict=True):
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)
    log = (job / "run.log").read_text()
    assert log.count("done: top-1") == 1 and "DDP: rank 0 of 2, backend gloo" in log
    assert "rank 1" not in log  # rank 1 writes nothing to the run dir


def test_a_requeued_job_says_so_to_its_sweep_then_resumes_to_the_uninterrupted_numbers(tmp_path):
    long_run = ["+experiment=smoke", "data.num_train=768", "data.num_val=64", "train.epochs=3", "train.threads=1",
                "sched.warmup_epochs=1"]
    job = tmp_path / "sweep" / "job"
    process = subprocess.Popen(command("src.run", "-m", *LAUNCHER, f"hydra.sweep.dir={tmp_path / 'sweep'}",
                                       "hydra.sweep.subdir=job", *long_run), cwd=ROOT, env=cli_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # the first epoch's checkpoint: the job is in its second epoch
    wait_for((job / "last.pt").exists, "the first epoch's last.pt", process, poll_s=0.1)
    time.sleep(0.5)
    job_id = subprocess.run(["squeue", "-h", "-o", "%i"], stdout=subprocess.PIPE, text=True,
                            check=True).stdout.split()[0]
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    output, _ = process.communicate(timeout=PATIENCE_S)
    assert process.returncode != 0, output[-3000:]
    assert "JobInterrupted: SIGTERM at epoch 2/3, step " in output and "SLURM resumes a requeued job" in output
    assert re.search(r"^0 +interrupted .*SIGTERM at epoch 2/3", output, re.M)
    assert "sweep FAILED: 1 interrupted of 1 jobs" in output
    # a requeued job waits about 2 minutes (BeginTime) before it runs again: once SLURM has requeued it (pending
    # again; an update before that is overwritten by the requeue's own begin time), start it now
    wait_for(lambda: pending(job_id), f"job {job_id} pending again after its requeue", poll_s=0.2)
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
    wait_for(lambda: json.loads((job / "results.json").read_text())["status"] == "completed",
             "the requeued job's completed results.json", poll_s=0.5)
    assert "resumed from" in (job / "run.log").read_text()
    plain = run_module("src.run", *long_run, f"hydra.run.dir={tmp_path / 'plain'}", merge_stderr=True)
    assert plain.returncode == 0, plain.stdout[-3000:]
    resumed, reference = (json.loads((path / "results.json").read_text()) for path in (job, tmp_path / "plain"))
    assert resumed["final"] == reference["final"] and resumed["best"] == reference["best"]  # exactly
    # validation after every epoch, exactly; (the stopped epoch's train_loss is the mean over its steps after the
    # resume, as for any resumed run: tests/test_resume.py)
    assert [(row["val_loss"], row["top1"]) for row in resumed["history"]] == [
        (row["val_loss"], row["top1"]) for row in reference["history"]]


def test_a_sweep_with_a_failed_job_exits_non_zero_after_its_table(tmp_path):
    done = run_module("src.run", "-m", *LAUNCHER, f"hydra.sweep.dir={tmp_path / 'sweep'}", *RUN, "train.epochs=1,0",
                      merge_stderr=True, timeout=PATIENCE_S)
    assert done.returncode == 1, done.stdout[-3000:]
    assert re.search(r"^0 +done .*top-1 ", done.stdout, re.M), done.stdout[-3000:]
    assert re.search(r"^1 +failed .*train.epochs=0: must be >= 1", done.stdout, re.M)
    assert "sweep FAILED: 1 done, 1 failed of 2 jobs" in done.stdout
