"""A worker: for each arm, trials until the study's budget is met. Any number of workers share a study through its
storage: several on this machine (``--workers N``), or the same command in several SLURM jobs.

The budget (``trials``) counts complete and pruned trials over all workers; failed ones do not count. A worker
takes the arm's lock (``OUT/ARM/.budget.lock``, an ``flock``) around counting, asking for a trial and drawing its
params, so that two workers never both take the last place: the budget is met exactly. (Optuna's
``MaxTrialsCallback`` counts finished trials only after each trial, so two workers that start when one place is
left both run: one trial too many.) While the places left are all taken by running trials, a worker waits for them:
one may yet fail, and its place is then taken again. A lost trial's retry keeps the place its trial held, and runs
before any new trial.

Lost trials: a trial that says RUNNING while its worker (recorded as a user attr: host, pid, the process's start
time) is on this machine and no longer alive is failed at once and queued again with its params, which resume the
same run dir. A worker elsewhere is found lost by the storage's heartbeat (``src.tune.storage``).
"""
import fcntl
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from .check import ArmPlan
from .errors import BadSpace
from .space import PRUNERS, Space
from .storage import RETRY, experimental, open_storage, open_study
from .trial import Objective, RunFailed, RunLost

log = logging.getLogger(__name__)
WAIT_S = 2.0  # how often a worker waiting on the last running trials looks again
LOCK_FILE = ".budget.lock"
WORKERS_ATTR = "workers_started"  # a study's count of the workers that joined it: each one's sampler seed


class BudgetLock:
    """An exclusive ``flock`` on ``OUT/ARM/.budget.lock``; re-entrant release (the objective releases it first)."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / LOCK_FILE
        self.fd: Optional[int] = None

    def acquire(self) -> "BudgetLock":
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "BudgetLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# -- who runs a trial ----------------------------------------------------------------------------------------
def process_start(pid: int) -> Optional[int]:
    """The process's start time in clock ticks since boot (``/proc/PID/stat``), which tells a reused pid from the
    original; None where there is no such process (or no /proc). A zombie counts as gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return None if fields[0] == "Z" else int(fields[19])


def worker_identity() -> Dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": process_start(os.getpid())}


def alive(worker: Dict[str, Any]) -> bool:
    """Whether the worker recorded on a trial still runs; a worker on another host counts as alive (its storage's
    heartbeat finds it lost)."""
    if worker.get("host") != socket.gethostname():
        return True
    if Path("/proc").is_dir():
        started = process_start(int(worker["pid"]))
        return started is not None and started == worker.get("started")
    try:
        os.kill(int(worker["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_lost_trials(study: optuna.Study) -> None:
    """Fails and queues again (``RETRY``) each RUNNING trial whose worker on this host is dead; then Optuna's own
    check of heartbeats, for workers elsewhere."""
    storage = study._storage  # Optuna's own fail_stale_trials works on the storage the same way
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker") or {}
        if worker.get("trial") != trial.number or alive(worker):  # a retry carries its original's worker
            continue
        try:
            storage.set_trial_user_attr(trial._trial_id, "reason", f"its worker (pid {worker['pid']} on "
                                                                   f"{worker['host']}) died")
            storage.set_trial_user_attr(trial._trial_id, "lost", True)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:  # another worker got there first
            continue
        log.warning("trial %d of %s: its worker (pid %s) died; queued again with the same params", trial.number,
                    study.study_name, worker["pid"])
        with experimental():
            RETRY(study, storage.get_trial(trial._trial_id))
    with experimental():
        optuna.storages.fail_stale_trials(study)


# -- the loop ------------------------------------------------------------------------------------------------
def make_sampler(space: Space, worker_number: int) -> optuna.samplers.BaseSampler:
    """The space's sampler, seeded from its seed and this worker's number in the study: one worker on a fresh study
    draws what it drew last time; two workers never draw the same sequence."""
    settings = {key: value for key, value in space.sampler.items() if key != "type"}
    seed = settings.pop("seed", None)
    if seed is not None:
        seed = int(np.random.SeedSequence([seed, worker_number]).generate_state(1)[0])
    kind = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}[space.sampler["type"]]
    return kind(seed=seed, **settings)


def make_pruner(space: Space, plan: ArmPlan) -> optuna.pruners.BasePruner:
    """The space's pruner, its unset keys at ``PRUNERS``' defaults (Hyperband's max_resource: the run's epochs)."""
    kind = space.pruner["type"]
    settings = {name: default for name, (_, default) in PRUNERS[kind].items() if default is not None}
    settings.update({key: value for key, value in space.pruner.items() if key != "type"})
    if kind == "hyperband":
        settings.setdefault("max_resource", plan.epochs)
    return {"successive_halving": optuna.pruners.SuccessiveHalvingPruner, "hyperband": optuna.pruners.HyperbandPruner,
            "median": optuna.pruners.MedianPruner, "none": optuna.pruners.NopPruner}[kind](**settings)


def enqueue_next(study: optuna.Study, space: Space) -> None:
    """Queues the first of the space's ``enqueue`` param sets that no trial has run, when no trial waits: the only
    waiting trials are then retries of lost ones, which Optuna hands out first (the lowest number)."""
    trials = study.get_trials(deepcopy=False)
    if any(trial.state == TrialState.WAITING for trial in trials):
        return
    for params in space.enqueue:
        if not any(all(trial.params.get(key) == value for key, value in params.items()) for trial in trials):
            study.enqueue_trial(params)
            return


def budget_state(study: optuna.Study, trials: int) -> str:
    """``met``; ``open`` (a place is free, or a retry waits: it holds the place its lost trial held); or ``in
    flight`` (the places left are all taken by running trials)."""
    states = [trial.state for trial in study.get_trials(deepcopy=False)]
    finished = sum(state in (TrialState.COMPLETE, TrialState.PRUNED) for state in states)
    if finished >= trials:
        return "met"
    if TrialState.WAITING in states or finished + states.count(TrialState.RUNNING) < trials:
        return "open"
    return "in flight"


def failed_runs(study: optuna.Study) -> int:
    """FAIL trials whose run failed (not those lost with their worker or stopped, which are retried)."""
    return sum(trial.state == TrialState.FAIL and bool(trial.user_attrs.get("reason"))
               and not trial.user_attrs.get("lost") for trial in study.get_trials(deepcopy=False))


def run_arm(space: Space, plan: ArmPlan) -> None:
    """Trials of one arm until its budget is met (by this worker and the others)."""
    lock = BudgetLock(plan.folder)
    study = open_study(open_storage(space.storage), plan.study)  # made by the first worker
    with lock:
        number = int(study.user_attrs.get(WORKERS_ATTR, 0))
        study.set_user_attr(WORKERS_ATTR, number + 1)
    study.sampler, study.pruner = make_sampler(space, number), make_pruner(space, plan)
    objective = Objective(space, plan, worker_identity(), on_start=lock.release)
    while True:
        with lock:
            fail_lost_trials(study)
            state = budget_state(study, space.trials)
            if state == "open":
                enqueue_next(study, space)
                study.optimize(objective, n_trials=1, catch=(RunFailed, RunLost))
        if state == "met":
            return
        if failed_runs(study) >= space.trials:
            raise BadSpace(f"{plan.study}: {failed_runs(study)} runs failed, as many as the budget: the space or the "
                           f"base does not run; see the reasons in each run dir's results.json and "
                           f"{plan.folder / 'study.json'}")
        if state == "in flight":
            time.sleep(WAIT_S)
