"""The objective: one trial is one normal ``python -m src.run`` job in its own run dir. The worker polls the run's
``results.json`` (rewritten atomically after every epoch) and reports each new epoch's metric to Optuna, the step
being the epochs trained so far; when the pruner says so it sends SIGTERM to the run (which saves a checkpoint and
exits 143), records the run ``pruned`` with the pruner and the epoch, and raises ``TrialPruned``. A completed run's
value is its last epoch's metric; a failed run is a FAIL trial with the run's reason. A retried trial (same params,
same run dir) resumes the run from its ``last.pt`` and reports again the epochs already in its history.
"""
import logging
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Set, Tuple

import optuna

from src.train.record import RunRecord, now_iso
from src.train.record_io import RESULTS_FILE, read_results, write_results

from .check import ArmPlan
from .child import WORKER_ENV
from .overrides import run_command, run_id, shell_line, trial_overrides
from .space import Space
from .storage import RETRY, experimental

log = logging.getLogger(__name__)
POLL_S = 0.2  # how often the worker reads a running trial's results.json: small next to an epoch
LAUNCH_LOG = "tune.log"  # the run's console output, in its run dir (run.log holds its log lines too)
# What a trial records as user attrs when it ends (besides "worker" and "run_dir", set when it starts).
TRIAL_ATTRS = ("epochs", "epochs_trained", "wall_s", "cpu_s", "reason", "lost")


class RunFailed(Exception):
    """The run ended failed (or never started): a FAIL trial, not retried; the message is the run's reason."""


class RunLost(Exception):
    """The run was stopped from outside (a signal to it alone): a FAIL trial, retried with the same params."""


def retry(trial: optuna.Trial, reason: str) -> None:
    """Marks the trial lost, with why, and queues it again with its params (at most ``MAX_RETRIES`` times), as
    Optuna does for a trial whose heartbeat stopped: the retry resumes the same run dir."""
    trial.set_user_attr("reason", reason)
    trial.set_user_attr("lost", True)
    with experimental():
        RETRY(trial.study, next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number))


class Launch:
    """The trial's process: ``src.tune.child`` (``src.run`` that stops when this worker dies) in its own session,
    its console output appended to ``RUN_DIR/tune.log``; its CPU time from this process's children's usage."""

    def __init__(self, overrides, run_dir: Path):
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = run_dir
        self.started = time.monotonic()
        self.usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(run_dir / LAUNCH_LOG, "a") as out:
            out.write(f"# {now_iso()}: {shell_line(run_command(overrides))}\n")
            out.flush()
            self.process = subprocess.Popen([sys.executable, "-m", "src.tune.child", *overrides], stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True, env={**os.environ, WORKER_ENV: str(os.getpid())})

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM to the run's session (the run and its loader processes); waits for its checkpoint and exit."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:  # it ended meanwhile
                pass
        self.process.wait()

    def costs(self) -> Dict[str, float]:
        """Wall and CPU seconds of the ended run (user + system, its loader processes included)."""
        self.process.wait()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = usage.ru_utime + usage.ru_stime - self.usage.ru_utime - self.usage.ru_stime
        return {"wall_s": round(time.monotonic() - self.started, 3), "cpu_s": round(cpu, 3)}

    def output_tail(self, lines: int = 5) -> str:
        text = (self.run_dir / LAUNCH_LOG).read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])


def read_record(run_dir: Path) -> Optional[RunRecord]:
    return read_results(run_dir) if (run_dir / RESULTS_FILE).is_file() else None


@dataclass
class Reporter:
    """Reports each epoch row of a run's history once, as (metric, epochs trained)."""
    trial: optuna.Trial
    metric: str
    reported: Set[int] = field(default_factory=set)
    last: Tuple[int, float] = (0, float("nan"))  # the latest epoch reported and its metric

    def report(self, record: Optional[RunRecord]) -> bool:
        """True when a new epoch was reported."""
        new = False
        for row in (record or {}).get("history") or []:
            step = row["epoch"] + 1
            if step in self.reported:
                continue
            if self.metric not in row:
                raise RunFailed(f"epoch {step} of {RESULTS_FILE} has no {self.metric}: the run does not log it")
            self.trial.report(row[self.metric], step)
            self.reported.add(step)
            self.last = max(self.last, (step, row[self.metric]))
            new = True
        return new


class Objective:
    """``study.optimize``'s objective for one arm. ``on_start`` runs once the trial's params are drawn (the worker
    releases the budget lock there); ``worker`` says who runs the trial (``src.tune.worker.worker_identity``)."""

    def __init__(self, space: Space, plan: ArmPlan, worker: Dict[str, Any], on_start=lambda: None):
        self.space, self.plan, self.worker, self.on_start = space, plan, worker, on_start

    def __call__(self, trial: optuna.Trial) -> float:
        for key in set(trial.user_attrs) & set(TRIAL_ATTRS):  # a retry carries its original's: not its own
            trial.set_user_attr(key, None)
        trial.set_user_attr("worker", {**self.worker, "trial": trial.number})
        params = {key: dist.suggest(trial) for key, dist in self.space.dists.items()}
        self.on_start()  # the params are in the storage: another worker sees them
        run_dir = (self.plan.folder / run_id(self.space.base, self.plan.arm, params)).absolute()
        trial.set_user_attr("run_dir", str(run_dir))
        before = len((read_record(run_dir) or {}).get("history") or [])
        tags = [*self.plan.tags, "tune", f"study={self.plan.study}", f"trial={trial.number}"]
        overrides = trial_overrides(self.space.base, self.plan.arm, params, run_dir, tags)
        log.info("trial %d of %s: %s (%s)", trial.number, self.plan.study,
                 " ".join(f"{key}={value}" for key, value in params.items()) or "-", run_dir)
        launch = Launch(overrides, run_dir)
        try:
            return self.watch(trial, launch, before)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM to the worker: the run saves its checkpoint, and the
            launch.stop()  # trial is queued again with the same params, to resume where it stopped
            retry(trial, "its worker was stopped (Ctrl-C or SIGTERM)")
            raise
        except BaseException:  # the trial ends here, whatever ended it: so does its run
            launch.stop()
            raise

    def watch(self, trial: optuna.Trial, launch: Launch, before: int) -> float:
        reporter, longest = Reporter(trial, self.space.metric), None
        while launch.running():
            record = read_record(launch.run_dir)
            if record and len(record.get("history") or []) >= len((longest or {}).get("history") or []):
                longest = record
            if reporter.report(record) and trial.should_prune():
                launch.stop()
                return self.pruned(trial, launch, reporter, longest, before)
            time.sleep(POLL_S)
        return self.ended(trial, launch, reporter, before)

    def ended(self, trial: optuna.Trial, launch: Launch, reporter: Reporter, before: int) -> float:
        costs = launch.costs()
        record = read_record(launch.run_dir)
        reporter.report(record)
        status = (record or {}).get("status")
        self.set_costs(trial, costs, record, before)
        if status == "completed":
            return record["history"][-1][self.space.metric]
        if status == "failed" or record is None:
            reason = (record or {}).get("reason") or (f"exit {launch.process.returncode}, no {RESULTS_FILE}: "
                                                     f"{launch.output_tail()}")
            trial.set_user_attr("reason", reason)
            raise RunFailed(reason)
        reason = f"the run ended {status} (exit {launch.process.returncode}), stopped from outside"
        retry(trial, reason)
        raise RunLost(reason)

    def pruned(self, trial: optuna.Trial, launch: Launch, reporter: Reporter, longest: Optional[RunRecord],
               before: int) -> float:
        """The run has stopped; it is recorded ``pruned`` unless it had completed first (then it counts)."""
        record = read_record(launch.run_dir)
        if record is not None and record.get("status") == "completed":
            return self.ended(trial, launch, reporter, before)
        if record is None or len(record.get("history") or []) < len((longest or {}).get("history") or []):
            record = longest  # stopped while its start rewrote the record: the last full one
        step, value = reporter.last
        reason = (f"pruned by Optuna's {type(trial.study.pruner).__name__} after epoch {step} of "
                  f"{self.plan.epochs}: {self.space.metric} {value:.2f}")
        if record is not None:
            record.update(status="pruned", reason=reason, finished_at=now_iso())
            write_results(launch.run_dir, record)
        self.set_costs(trial, launch.costs(), record, before)
        trial.set_user_attr("reason", reason)
        log.info("trial %d %s", trial.number, reason)
        raise optuna.TrialPruned(reason)

    @staticmethod
    def set_costs(trial: optuna.Trial, costs: Dict[str, float], record: Optional[RunRecord], before: int) -> None:
        epochs = len((record or {}).get("history") or [])
        trial.set_user_attr("epochs", epochs)
        trial.set_user_attr("epochs_trained", max(0, epochs - before))
        for key, value in costs.items():
            trial.set_user_attr(key, value)
