"""Runs that survive, end to end through ``python -m src.run`` in real subprocesses: SIGKILL and SIGTERM
mid-run then resume (exactly the uninterrupted metrics), non-finite loss, idempotent sweep re-runs, and the
bad inputs (corrupt checkpoint, another config's results, unwritable output dir)."""
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from conftest import PATIENCE_S, ROOT, cli_env, command, run_module, wait_for

pytestmark = pytest.mark.slow  # every test here trains in a subprocess

# 3 epochs of 48 batches (about 2 s each on one thread): long enough to be killed in the middle of one.
RUN = ["+experiment=smoke", "data.num_train=768", "data.num_val=64", "train.epochs=3", "train.threads=1",
       "sched.warmup_epochs=1"]


def run_args(run_dir: Path, *extra: str) -> list:
    return [*RUN, f"hydra.run.dir={run_dir}", *extra]


def run_cli(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_module("src.run", *run_args(run_dir, *extra), merge_stderr=True, WANDB_MODE="offline")


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def start_and_signal(run_dir: Path, sig: int, delay_s: float, *extra: str) -> subprocess.CompletedProcess:
    """Starts a run, waits until its first epoch's last.pt exists, then ``delay_s`` more, and sends ``sig``."""
    process = subprocess.Popen(command("src.run", *run_args(run_dir, *extra)), cwd=ROOT,
                               env=cli_env(WANDB_MODE="offline"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    wait_for((run_dir / "last.pt").exists, "the first epoch's last.pt", process, poll_s=0.02)
    time.sleep(delay_s)
    process.send_signal(sig)
    output, _ = process.communicate(timeout=PATIENCE_S)
    return subprocess.CompletedProcess(process.args, process.returncode, output, "")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("reference")
    done = run_cli(run_dir)
    assert done.returncode == 0, done.stdout[-3000:]
    return results(run_dir)


def same_metrics(resumed: dict, reference: dict) -> None:
    assert resumed["status"] == "completed"
    assert resumed["final"] == reference["final"]  # exactly: same data order, RNG, optimizer state
    assert resumed["best"] == reference["best"]
    assert [r["val_loss"] for r in resumed["history"]] == [r["val_loss"] for r in reference["history"]]


def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_metrics(tmp_path, reference):
    killed = start_and_signal(tmp_path, signal.SIGKILL, 0.3, "train.ckpt_every_steps=10")
    assert killed.returncode == -signal.SIGKILL
    assert results(tmp_path)["status"] == "running"  # a SIGKILL leaves no chance to write anything else
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=True)
    assert checkpoint["state"]["step"] % 10 == 0 and checkpoint["batches_done"] > 0  # a periodic mid-epoch save
    resumed = run_cli(tmp_path, "train.ckpt_every_steps=10")
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert "resumed from" in resumed.stdout
    same_metrics(results(tmp_path), reference)


def test_sigterm_saves_mid_epoch_checkpoint_and_resume_continues_the_wandb_run(tmp_path, reference):
    stopped = start_and_signal(tmp_path, signal.SIGTERM, 0.5, "logger=wandb", "logger.mode=offline")
    assert stopped.returncode == 143, stopped.stdout[-3000:]
    record = results(tmp_path)
    assert record["status"] == "interrupted" and record["reason"].startswith("SIGTERM at epoch 2/")
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=True)
    assert 0 < checkpoint["batches_done"] < 48  # stopped inside epoch 1, not at its end
    assert checkpoint["wandb_run_id"] == record["wandb"]["run_id"]
    resumed = run_cli(tmp_path, "logger=wandb", "logger.mode=offline")
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    final = results(tmp_path)
    assert final["wandb"]["run_id"] == record["wandb"]["run_id"]  # the same W&B run, continued
    same_metrics(final, reference)


def test_non_finite_loss_fails_with_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path):
    # epoch 0 is warm-up at a sane lr and saves last.pt; epoch 1 jumps to lr=1e30 and diverges
    done = run_cli(tmp_path, "optim.lr=1e30", "sched.warmup_lr=1e-4", "sched.step_on_epochs=true")
    assert done.returncode == 1
    record = results(tmp_path)
    assert record["status"] == "failed"
    assert "non-finite loss at epoch 2/" in record["reason"] and ", lr " in record["reason"]
    assert "Traceback" not in done.stdout and "error: non-finite loss at epoch 2/" in done.stdout, record["reason"]
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=True)
    assert checkpoint["state"]["epoch"] == 1  # the epoch-0 checkpoint, untouched by the failure
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values() if v.is_floating_point())


def test_corrupt_checkpoint_is_named_and_falls_back_or_fails(tmp_path):
    done = run_cli(tmp_path, "train.epochs=1", "data.num_train=64")
    assert done.returncode == 0
    record = results(tmp_path)
    record["status"] = "interrupted"  # pretend it stopped, so that the next run resumes
    (tmp_path / "results.json").write_text(json.dumps(record))
    (tmp_path / "last.pt").write_bytes(b"garbage")
    again = run_cli(tmp_path, "train.epochs=1", "data.num_train=64")
    assert again.returncode == 1
    assert f"checkpoint {tmp_path / 'last.pt'} is not a PyTorch checkpoint" in results(tmp_path)["reason"]
    missing = run_cli(tmp_path, "train.epochs=1", "data.num_train=64", f"train.resume={tmp_path / 'no.pt'}")
    assert missing.returncode == 1
    assert f"checkpoint {tmp_path / 'no.pt'} does not exist" in results(tmp_path)["reason"]


def test_results_of_another_config_in_the_run_dir_is_an_error(tmp_path):
    assert run_cli(tmp_path, "train.epochs=1", "data.num_train=64").returncode == 0
    before = (tmp_path / "results.json").read_text()
    other = run_cli(tmp_path, "train.epochs=1", "data.num_train=64", "seed=1")
    assert other.returncode == 1
    assert f"{tmp_path / 'results.json'} holds results of another config" in other.stdout
    assert "Traceback" not in other.stdout and sum("error: " in line for line in other.stdout.splitlines()) == 1
    assert (tmp_path / "results.json").read_text() == before  # left as it was
    assert "train.force=true" in other.stdout
    forced = run_cli(tmp_path, "train.epochs=1", "data.num_train=64", "seed=1", "train.force=true")
    assert forced.returncode == 0, forced.stdout[-3000:]
    after = results(tmp_path)
    assert after["status"] == "completed" and after["seed"] == 1


def test_unwritable_output_dir_is_an_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    done = run_cli(tmp_path / "file" / "run", "train.epochs=1", "data.num_train=64")
    assert done.returncode != 0
    assert "Not a directory" in done.stdout or "NotADirectoryError" in done.stdout


def test_sweep_rerun_executes_only_missing_and_failed_jobs(tmp_path):
    sweep = ["-m", "+experiment=smoke", "train.threads=1", "fusion=none,cross,pairwise", f"hydra.sweep.dir={tmp_path}"]
    first = run_module("src.run", *sweep, merge_stderr=True, WANDB_MODE="offline")
    assert first.returncode == 0, first.stdout[-3000:]
    stamps = {job: results(tmp_path / job)["started_at"] for job in "012"}
    failed = results(tmp_path / "1")
    failed.update(status="failed", reason="RuntimeError: simulated")
    (tmp_path / "1" / "results.json").write_text(json.dumps(failed))
    for name in ("results.json", "last.pt", "best.pt"):  # job 2 never ran
        (tmp_path / "2" / name).unlink()
    time.sleep(1.1)  # started_at has one-second resolution
    second = run_module("src.run", *sweep, merge_stderr=True, WANDB_MODE="offline")
    assert second.returncode == 0, second.stdout[-3000:]
    assert results(tmp_path / "0")["started_at"] == stamps["0"]  # completed: skipped
    assert "already completed for this config: skipped" in second.stdout
    for job in "12":
        assert results(tmp_path / job)["status"] == "completed"
        assert results(tmp_path / job)["started_at"] != stamps[job]
