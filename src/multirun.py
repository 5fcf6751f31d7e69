"""A multirun that says how it went, on every launcher: the basic one (jobs in this process), joblib's workers
(``hydra/launcher=parallel``), submitit's processes and SLURM jobs.

``MultirunWatch`` is a Hydra callback (``hydra.callbacks`` in conf/config.yaml). At the sweep's start, in the
process that launches it, it plans the jobs (Hydra's own split of the overrides) and puts the sweep's id, start
time and job count in the environment, which every launcher's jobs inherit. Each job, where it ran, leaves its
``Outcome`` (done, skipped, failed or interrupted, the one-line reason, the run dir) in ``SWEEP_DIR/.outcomes/ID/``
and logs one line: the jobs finished of N, the time elapsed and the sweep's ETA. ``close`` (``src.run``, after
Hydra returns or fails) prints a table of every planned job and returns the exit status: 1 when a job failed, was
interrupted or left no outcome (killed before it could), else 0."""
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, TypedDict

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

log = logging.getLogger("src.multirun")
SWEEP_ID_ENV, STARTED_ENV, JOBS_ENV = "FUSIONVIT_SWEEP_ID", "FUSIONVIT_SWEEP_STARTED", "FUSIONVIT_SWEEP_JOBS"
OUTCOMES = ".outcomes"
STATUSES = ("done", "skipped", "failed", "interrupted")


class Outcome(TypedDict):
    job: int  # Hydra's job number
    status: str  # one of STATUSES
    reason: str  # one line: the top-1 of a done job, why a job was skipped, failed or interrupted
    run_dir: str
    seconds: float
    overrides: List[str]


# the sweep this process launched (``on_multirun_start``), for ``close``
launched: Dict[str, Any] = {}


def planned_jobs(config: DictConfig) -> Optional[List[List[str]]]:
    """The jobs' overrides, split as Hydra's basic sweeper splits them; None where they cannot be listed here (a
    glob over a group's options needs Hydra's config loader)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()] + list(config.hydra.overrides.task)
    try:
        overrides = OverridesParser.create().parse_overrides(arguments)
        return [list(job) for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]
    except Exception:  # noqa: BLE001 - the count is a convenience; Hydra reports a bad sweep itself
        return None


def outcome_dir(sweep_dir: str, sweep_id: str) -> Path:
    return Path(sweep_dir) / OUTCOMES / sweep_id


def is_main_rank() -> bool:
    """Rank 0 of torchrun or of a SLURM job's tasks (or no ranks at all)."""
    return os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")) == "0"


class MultirunWatch(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        jobs = planned_jobs(config)
        sweep_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        os.environ.update({SWEEP_ID_ENV: sweep_id, STARTED_ENV: repr(time.time()),
                           JOBS_ENV: str(len(jobs)) if jobs is not None else ""})
        launched.clear()
        launched.update(id=sweep_id, dir=str(config.hydra.sweep.dir), jobs=jobs, started=time.time())
        log.info("sweep of %s jobs in %s", len(jobs) if jobs is not None else "its", config.hydra.sweep.dir)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if os.environ.get(SWEEP_ID_ENV) and "joblib" in str(config.hydra.launcher.get("_target_", "")):
            quiet_console()  # jobs side by side: one line a job on the console, every line in each run.log

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        sweep_id = os.environ.get(SWEEP_ID_ENV)
        if not sweep_id or not is_main_rank() or config.hydra.mode != RunMode.MULTIRUN:
            return
        outcome = outcome_of(job_return, config)
        folder = outcome_dir(str(config.hydra.sweep.dir), sweep_id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{outcome['job']}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(outcome))
        os.replace(temporary, path)  # a reader sees a whole file or none
        finished = len(list(folder.glob("*.json")))
        log.info("%s", progress_line(outcome, finished))


def outcome_of(job_return: Any, config: DictConfig) -> Outcome:
    """The job's outcome: what ``src.run``'s task returned, or the exception it raised."""
    from hydra.core.utils import JobStatus

    hydra_cfg = config.hydra
    base = {"job": int(hydra_cfg.job.num), "run_dir": str(hydra_cfg.runtime.output_dir),
            "overrides": list(hydra_cfg.overrides.task), "seconds": 0.0}
    value = job_return._return_value  # the property re-raises a failed job's exception
    if job_return.status == JobStatus.COMPLETED and isinstance(value, dict):
        return {**base, **value}
    if job_return.status == JobStatus.COMPLETED:
        return {**base, "status": "done", "reason": ""}
    interrupted = type(value).__name__ in ("JobInterrupted", "KeyboardInterrupt")
    return {**base, "status": "interrupted" if interrupted else "failed",
            "reason": f"{type(value).__name__}: {' '.join(str(value).split())}"[:300]}


def progress_line(outcome: Outcome, finished: int) -> str:
    """``job 3 (fusion=cross seed=0) done in 45 s: top-1 93.10; 3 of 35 finished, 2m15s elapsed, ETA 24m``."""
    total = int(os.environ.get(JOBS_ENV) or 0)
    elapsed = time.time() - float(os.environ.get(STARTED_ENV) or time.time())
    of = f" of {total}" if total else ""
    eta = f", ETA {duration(elapsed / finished * (total - finished))}" if total and finished < total else ""
    reason = f": {outcome['reason']}" if outcome["reason"] else ""
    return (f"job {outcome['job']} ({' '.join(outcome['overrides']) or 'no overrides'}) {outcome['status']} in "
            f"{duration(outcome['seconds'])}{reason}; {finished}{of} finished, {duration(elapsed)} elapsed{eta}")


def duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ConsoleFilter(logging.Filter):
    """The console under ``quiet_console``: the sweep's progress lines, warnings and errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name == log.name


def quiet_console() -> None:
    """Keeps a job's info lines (epochs, steps) off the console, where the jobs run side by side; its run.log has
    them all. Hydra configures a job's logging afresh at its start, so the filter lasts one job."""
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:
            handler.addFilter(ConsoleFilter())


def read_outcomes(sweep_dir: str, sweep_id: str) -> Dict[int, Outcome]:
    outcomes = {}
    for path in outcome_dir(sweep_dir, sweep_id).glob("*.json"):
        try:
            outcome = json.loads(path.read_text())
            outcomes[int(outcome["job"])] = outcome
        except (ValueError, KeyError, OSError):
            continue
    return outcomes


def close() -> int:
    """After a multirun this process launched: the table of every job, and the exit status (0: every job done or
    skipped). 0 when no multirun was launched."""
    if not launched:
        return 0
    for key in (SWEEP_ID_ENV, STARTED_ENV, JOBS_ENV):  # a later run in this process is no job of this sweep
        os.environ.pop(key, None)
    if not is_main_rank():  # torchrun: rank 0 holds the outcomes and says how the sweep went
        launched.clear()
        return 0
    outcomes = read_outcomes(launched["dir"], launched["id"])
    planned = launched["jobs"]
    numbers = range(len(planned)) if planned is not None else sorted(outcomes)
    rows = []
    for number in numbers:
        outcome = outcomes.get(number)
        overrides = " ".join(planned[number]) if planned is not None else " ".join(outcome["overrides"])
        if outcome is None:
            rows.append((number, "failed", overrides, "left no outcome: its process was killed, or the sweep stopped "
                                                       "before it ran", ""))
        else:
            rows.append((number, outcome["status"], overrides, outcome["reason"], outcome["run_dir"]))
    counts = {status: sum(row[1] == status for row in rows) for status in STATUSES}
    bad = counts["failed"] + counts["interrupted"]
    summary = ", ".join(f"{count} {status}" for status, count in counts.items() if count)
    elapsed, sweep_dir = duration(time.time() - launched["started"]), launched["dir"]
    launched.clear()
    print(table(rows) + f"\nsweep {'FAILED' if bad else 'done'}: {summary} of {len(rows)} jobs in {elapsed}; "
          f"{sweep_dir}" + ("" if not bad else "; the same command again resumes the interrupted and retries "
                                                     "the failed, skipping the done"), flush=True)
    return 1 if bad else 0


def table(rows: List[tuple]) -> str:
    header = ("job", "status", "overrides", "reason", "run dir")
    cells = [header] + [(str(row[0]), row[1], row[2] or "-", row[3] or "-", row[4] or "-") for row in rows]
    widths = [min(60, max(len(cell[i]) for cell in cells)) for i in range(4)]
    lines = []
    for cell in cells:
        lines.append("  ".join([*(cell[i][:widths[i]].ljust(widths[i]) for i in range(4)), cell[4]]).rstrip())
    return "\n".join(lines)
