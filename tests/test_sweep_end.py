"""A multirun says how it went (``src.multirun``): a closing table of every job and a non-zero exit status when a job
failed, on the basic launcher, joblib's (``hydra/launcher=parallel``) and submitit's local one (SLURM:
tests/test_slurm_cluster.py); one progress line a job with the sweep's ETA; the jobs Hydra will run, planned as
Hydra's sweeper splits them."""
import re

import pytest

from src.multirun import duration, planned_jobs

from conftest import compose_config, run_module

SMOKE = ["+experiment=smoke", "train.threads=1", "train.progress=log"]
LAUNCHERS = {"basic": [], "parallel": ["hydra/launcher=parallel"], "local": ["hydra/launcher=local"]}


def sweep(sweep_dir, *overrides):
    return run_module("src.run", "-m", *SMOKE, f"hydra.sweep.dir={sweep_dir}", *overrides, merge_stderr=True)


def rows(output: str) -> dict:
    """The closing table: job number -> (status, reason and run dir)."""
    table = output[output.rindex("job  status"):].splitlines()[1:]
    return {int(line.split()[0]): (line.split()[1], line) for line in table if re.match(r"^\d+ ", line)}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_sweep_with_a_failed_job_ends_with_its_table_and_a_non_zero_status(tmp_path, launcher):
    done = sweep(tmp_path / "sweep", *LAUNCHERS[launcher], "train.epochs=1,0")
    assert done.returncode == 1, done.stdout[-3000:]
    table = rows(done.stdout)
    assert table[0][0] == "done" and "top-1 " in table[0][1] and str(tmp_path / "sweep" / "0") in table[0][1]
    assert table[1][0] == "failed" and "train.epochs=0: must be >= 1" in table[1][1]
    assert "sweep FAILED: 1 done, 1 failed of 2 jobs" in done.stdout


@pytest.mark.slow
def test_a_sweep_that_went_well_exits_0_and_its_rerun_says_every_job_was_skipped(tmp_path):
    first = sweep(tmp_path / "sweep", "seed=0,1")
    assert first.returncode == 0 and "sweep done: 2 done of 2 jobs" in first.stdout, first.stdout[-3000:]
    again = sweep(tmp_path / "sweep", "seed=0,1")
    assert again.returncode == 0 and "sweep done: 2 skipped of 2 jobs" in again.stdout, again.stdout[-3000:]
    assert all(status == "skipped" and "already completed" in line for status, line in rows(again.stdout).values())


@pytest.mark.slow
def test_the_parallel_launcher_prints_one_progress_line_a_job_and_keeps_step_lines_in_run_logs(tmp_path):
    done = sweep(tmp_path / "sweep", "hydra/launcher=parallel", "seed=0,1,2", "logger.log_every_n_steps=1")
    assert done.returncode == 0, done.stdout[-3000:]
    progress = [line for line in done.stdout.splitlines() if "[src.multirun]" in line and " finished" in line]
    assert len(progress) == 3
    assert sorted(int(re.search(r"; (\d) of 3 finished", line).group(1)) for line in progress) == [1, 2, 3]
    assert sum("ETA" in line for line in progress) == 2  # the last job has nothing left to estimate
    assert "step 1/4" not in done.stdout and "epoch 1/1:" not in done.stdout  # not on the console...
    log = (tmp_path / "sweep" / "0" / "run.log").read_text()
    assert "epoch 1/1, step 1/4: loss" in log and "ETA" in log and "epoch 1/1: train loss" in log  # ...but here


def test_the_planned_jobs_are_hydras_split_of_the_overrides_and_the_presets_params():
    assert len(planned_jobs(compose_config(["+experiment=make_run"], hydra=True))) == 10
    cfg = compose_config(hydra=True)
    cfg.hydra.overrides.task = ["fusion=cross,none", "seed=0,1,2"]  # what -m passes
    jobs = planned_jobs(cfg)
    assert len(jobs) == 6 and jobs[0] == ["fusion=cross", "seed=0"] and jobs[-1] == ["fusion=none", "seed=2"]


def test_durations_read_as_people_write_them():
    assert [duration(s) for s in (4.4, 75, 3725)] == ["4s", "1m15s", "1h02m"]
