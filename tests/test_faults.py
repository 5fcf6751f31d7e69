"""Faults that must never lose a finished result (issue 29): two sweeps into one folder, a kill inside the
final-checkpoint window and inside the ``best.pt`` write, a truncated record, a disk that fills up (a real tmpfs,
when the test runs as root). The kills come at exact moments (tests/fault_injection.py wraps the checkpoint
write); after each, the same command brings the run to the numbers of an uninterrupted one, with one
``metrics.csv`` row per epoch, ``best.pt`` as the record names it, no temp files, and the time of every launch."""
import csv
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from src.train.files import RESERVE_FILE
from src.train.lock import RunDirBusy, RunDirLock

from conftest import ROOT, cli_env, command, run_module

pytestmark = pytest.mark.slow
JOB = ["+experiment=smoke", "train.epochs=2", "train.threads=1"]
TIMES = ("epoch_time_s", "images_per_s", "data_wait_frac")  # what differs between two runs of the same job


def launch(run_dir: Path, *overrides: str, fault: str = None) -> subprocess.CompletedProcess:
    args = [*JOB, *overrides, f"hydra.run.dir={run_dir}"]
    if fault is None:
        return run_module("src.run", *args, merge_stderr=True, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(ROOT / "tests" / "fault_injection.py"), fault, *args], cwd=ROOT,
                          env=cli_env(OMP_NUM_THREADS="1"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300)


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def numbers(history: list) -> list:
    return [{key: value for key, value in row.items() if key not in TIMES} for row in history]


def epoch_rows(run_dir: Path) -> list:
    with open(run_dir / "metrics.csv", newline="") as file:
        return [row for row in csv.DictReader(file) if row["kind"] == "epoch"]


def assert_whole(run_dir: Path, reference: dict) -> dict:
    """Completed with the uninterrupted run's numbers, and every file saying the same."""
    done = record(run_dir)
    assert done["status"] == "completed" and numbers(done["history"]) == numbers(reference["history"])
    assert done["final"] == reference["final"] and done["best"] == reference["best"]
    assert [int(row["epoch"]) for row in epoch_rows(run_dir)] == [0, 1]
    best = torch.load(run_dir / "best.pt", weights_only=True)["state"]
    assert best["best_epoch"] == done["best"]["epoch"]
    assert not list(run_dir.glob(".*.tmp")) and not (run_dir / RESERVE_FILE).exists()
    return done


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reference")
    done = launch(run_dir)
    assert done.returncode == 0, done.stdout[-3000:]
    return record(run_dir)


@pytest.mark.parametrize("epoch", [0, 1])  # 1: the last epoch, committed by last.pt, not yet by the record
def test_a_kill_right_after_last_pt_resumes_to_the_whole_history(tmp_path, reference, epoch):
    killed = launch(tmp_path, fault=f"kill-after-last:{epoch}")
    assert killed.returncode == -9, killed.stdout[-3000:]
    assert len(record(tmp_path)["history"]) == epoch  # the record had not caught up with last.pt
    again = launch(tmp_path)
    assert again.returncode == 0 and "ended without recording how: killed" in again.stdout, again.stdout[-3000:]
    done = assert_whole(tmp_path, reference)
    # the time of both launches: the killed one's up to its checkpoint, and this one's
    assert done["wall_time_s"] > sum(row["epoch_time_s"] for row in done["history"])
    assert len(done["lost_launches"]) == 1
    rows = epoch_rows(tmp_path)
    if epoch == 0:  # the second epoch trained in the second launch: its time goes on from the first's
        assert float(rows[1]["time_s"]) > float(rows[0]["time_s"] or 0)
    assert (tmp_path / "results.json").stat().st_mode & 0o777 == 0o666 & ~current_umask()


def test_a_kill_inside_the_best_pt_write_leaves_nothing_half_done(tmp_path, reference):
    killed = launch(tmp_path, fault="kill-in-best:0")
    assert killed.returncode == -9 and list(tmp_path.glob(".best.pt.*.tmp")), killed.stdout[-3000:]
    assert not (tmp_path / "last.pt").exists()  # best.pt goes first: the epoch is not committed
    again = launch(tmp_path)
    assert again.returncode == 0, again.stdout[-3000:]
    assert_whole(tmp_path, reference)


def test_a_finished_run_with_a_truncated_record_is_rebuilt_from_its_checkpoint(tmp_path, reference):
    assert launch(tmp_path).returncode == 0
    whole = record(tmp_path)
    text = (tmp_path / "results.json").read_text()
    (tmp_path / "results.json").write_text(text[: len(text) // 3])
    again = launch(tmp_path)
    assert again.returncode == 0 and "is unreadable" in again.stdout, again.stdout[-3000:]
    assert "epoch 1/2" not in again.stdout  # resumed past its last epoch: nothing trained again
    done = assert_whole(tmp_path, reference)
    assert done["wall_time_s"] >= whole["wall_time_s"]


@pytest.mark.parametrize("launcher", ["basic", "parallel"])  # parallel: make run's route
def test_two_sweeps_into_one_dir_run_each_job_once(tmp_path, launcher):
    sweep = command("src.run", "-m", "+experiment=smoke", "fusion=none,cross,cls_token",
                    "train.threads=1", "train.ckpt_every_steps=1", f"hydra/launcher={launcher}",
                    f"hydra.sweep.dir={tmp_path}")
    env = cli_env(OMP_NUM_THREADS="1")
    both = [subprocess.Popen(sweep, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(2)]
    outputs = [process.communicate(timeout=300)[0] for process in both]
    assert [process.returncode for process in both] == [0, 0], "\n".join(out[-2000:] for out in outputs)
    text = "\n".join(outputs)
    assert "Error" not in text, text[-4000:]
    # each job: run by one sweep, skipped by the other (another process holds it, or it is already completed), as
    # the two sweeps' closing tables say (under the parallel launcher the jobs' own lines stay in their run.log)
    assert len(re.findall(r"^\d+ +done +", text, re.M)) == 3, text[-4000:]
    assert len(re.findall(r"^\d+ +skipped +.*(another live process holds|already completed)", text, re.M)) == 3
    records = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("*/results.json"))]
    assert len(records) == 3 and all(r["status"] == "completed" and len(r["history"]) == 1 for r in records)


def test_the_lock_names_its_holder_and_a_dead_holders_lock_is_taken_over(tmp_path):
    held = RunDirLock(tmp_path)
    assert held.acquire() is None
    with pytest.raises(RunDirBusy, match=rf"in use by pid {os.getpid()} on host {socket.gethostname()}"):
        RunDirLock(tmp_path).acquire()
    held.release()
    dead = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, '.'); "
                             f"from src.train.lock import RunDirLock; RunDirLock({str(tmp_path)!r}).acquire(); "
                             "print('held', flush=True); time.sleep(60)"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert dead.stdout.readline().strip() == "held"
    with pytest.raises(RunDirBusy, match=rf"pid {dead.pid} "):
        RunDirLock(tmp_path).acquire()
    dead.kill()
    dead.wait()
    taken = RunDirLock(tmp_path)
    previous = taken.acquire()  # the kernel let go of a killed holder's lock
    assert previous["pid"] == dead.pid and previous["released"] is False
    taken.release()


def test_waiting_for_the_lock_takes_it_once_the_holder_lets_go(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, '.'); "
                               f"from src.train.lock import RunDirLock; lock = RunDirLock({str(tmp_path)!r}); "
                               "lock.acquire(); print('held', flush=True); time.sleep(2); lock.release()"],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    started = time.monotonic()
    waiting = RunDirLock(tmp_path)
    assert waiting.acquire(wait=True)["released"] is True
    assert time.monotonic() - started > 0.5
    waiting.release()
    holder.wait()


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


# -- a disk that fills up: a real tmpfs, mounted when the test runs as root ------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_recorded_as_disk_full_at_the_run_dir(small_disk, reference):
    run_dir = small_disk / "run"
    failed = launch(run_dir, fault="fill-disk-before-last:0")
    assert failed.returncode == 1 and "Traceback" not in failed.stdout, failed.stdout[-3000:]
    done = record(run_dir)
    assert done["status"] == "failed"
    assert done["reason"].startswith(f"DiskFull: disk full at {run_dir} (about ") and "MB needed" in done["reason"]
    assert not list(run_dir.glob(".*.tmp"))
    (small_disk / "filler.bin").unlink()
    assert launch(run_dir).returncode == 0
    assert_whole(run_dir, reference)


def test_a_disk_too_full_to_record_the_failure_is_reported_by_the_next_start(small_disk, reference):
    run_dir = small_disk / "run"
    failed = launch(run_dir, fault="fill-disk-and-reserve-before-last:0")
    assert failed.returncode == 1 and "could not record the failure" in failed.stdout, failed.stdout[-3000:]
    assert record(run_dir)["status"] == "running"  # nothing could be written
    (small_disk / "filler.bin").unlink()
    again = launch(run_dir)
    assert again.returncode == 0, again.stdout[-3000:]
    done = assert_whole(run_dir, reference)
    assert "ended without recording how: killed, or its disk was full" in done["lost_launches"][0]
