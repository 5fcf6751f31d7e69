"""``python -m src.run``: train and evaluate one configuration; ``-m`` sweeps many (Hydra).

Every job leaves ``results.json`` and ``metrics.csv`` in its run dir. A failing job records ``status: failed``
with the reason and returns normally, so the other jobs of a sweep still run (a single run exits with status 1).
Each job starts from a clean process state (``src.train.process``): a sweep may run several jobs in one process.
Under a W&B sweep agent the command line is first made fit for Hydra (``src.sweeps.agent``).
"""
import logging
import os
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from src import multirun
from src.config import register_configs
from src.identity import same_job
from src.sweeps import agent
from src.train.files import DiskFull
from src.train.loggers import flatten  # wandb itself loads only when a logger starts
from src.train.naming import group_name
from src.train.record import RunRecord, mark_failed, mark_interrupted, new_record
from src.train.record_io import RESULTS_FILE, read_results, write_results

# Torch, timm and the training code load inside main(): Hydra answers --help and config errors before them.

log = logging.getLogger(__name__)
register_configs()


def initial_record(cfg: DictConfig, hydra_cfg, run_dir: Path) -> RunRecord:
    return new_record(OmegaConf.to_container(cfg, resolve=True),
                      {k: v for k, v in hydra_cfg.runtime.choices.items() if not k.startswith("hydra")},
                      first_overrides(list(hydra_cfg.overrides.task), run_dir), cfg.seed, run_dir)


def first_overrides(overrides: List[str], run_dir: Path) -> List[str]:
    """A re-queued agent run passes its whole config; its overrides stay those of its first launch, so that
    collate lists the keys the sweep set, not every key."""
    if agent.requeued and (run_dir / RESULTS_FILE).is_file():
        return read_results(run_dir).get("overrides", overrides)
    return overrides


def wandb_identity(results: RunRecord, hydra_cfg):
    """(config, group, name): the flattened config with the Hydra choices as top-level keys, the config
    without its seed as the group (``record.group_name``) and a readable run name."""
    config = {**flatten(results["config"]), **results["choices"]}
    choices = results["choices"]
    name = f"{choices.get('model')}-{choices.get('fusion')}-s{results['seed']}"
    if hydra_cfg.mode == RunMode.MULTIRUN:
        name += f"-{hydra_cfg.job.num}"
    return config, group_name(results["config"]), name


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> Dict[str, Any]:
    from src.train.process import isolated_job

    with isolated_job():  # the basic launcher and hydra/launcher=parallel run several jobs in one process
        return run_job(cfg, HydraConfig.get())


def outcome(status: str, reason: str, started: float) -> Dict[str, Any]:
    """How a job ended, for its sweep's closing table (``src.multirun``)."""
    return {"status": status, "reason": reason, "seconds": time.perf_counter() - started}


def run_job(cfg: DictConfig, hydra_cfg) -> Dict[str, Any]:
    from src.preflight import check_config
    from src.train import distributed
    from src.train.build import resolve_device
    from src.train.lock import claim_run_dir, release_run_dir

    started = time.perf_counter()
    try:  # every value and file, before anything is built or written
        check_config(cfg)
    except (ValueError, FileNotFoundError) as error:
        return refuse(error, cfg, hydra_cfg, started)
    if distributed.init(resolve_device(cfg.train.device)) and not distributed.is_main():
        logging.getLogger().setLevel(logging.WARNING)  # torchrun: rank 0 logs, the others only warn
        for handler in [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]:
            logging.getLogger().removeHandler(handler)  # and only rank 0 writes the run dir's run.log
    run_dir = Path(hydra_cfg.runtime.output_dir)
    results = initial_record(cfg, hydra_cfg, run_dir)
    lock, lost_launch = claim_run_dir(run_dir, wait=cfg.train.on_busy == "wait")  # one process per run dir
    if lock is None:
        return outcome("skipped", "another live process holds the run dir and runs the job (train.on_busy=skip)",
                       started)
    try:
        return run_claimed(cfg, hydra_cfg, run_dir, results, started, lost_launch)
    finally:
        release_run_dir(lock, run_dir)


def run_claimed(cfg: DictConfig, hydra_cfg, run_dir: Path, results: RunRecord, started: float,
                lost_launch: Optional[str]) -> Dict[str, Any]:
    """The job, with its run dir's lock held."""
    from src.train.checkpoint import AlreadyCompleted, CheckpointError, check_run_dir
    from src.train.loop import train

    try:  # idempotent sweeps: skip a completed job, resume or retry the others
        previous = check_run_dir(run_dir, results["config"], cfg.train.force)
    except AlreadyCompleted as done:
        log.info("%s", done)
        return outcome("skipped", "already completed for this config (train.force=true re-runs it)", started)
    except ValueError as error:  # another config's results: left as they are
        log.error("error: %s", one_line(error))
        if hydra_cfg.mode != RunMode.MULTIRUN:
            sys.exit(1)
        return outcome("failed", one_line(error), started)
    results["lost_launches"] = list((previous or {}).get("lost_launches") or [])
    if lost_launch:
        log.warning("%s: resuming", lost_launch)
        results["lost_launches"].append(lost_launch)
    write_results(run_dir, results)
    try:
        results = train(cfg, run_dir, results, *wandb_identity(results, hydra_cfg))
    except KeyboardInterrupt:
        mark_interrupted(results, "KeyboardInterrupt", time.perf_counter() - started)
        write_results(run_dir, results)
        raise
    except Exception as error:  # noqa: BLE001 - one failing job must not end a sweep
        mark_failed(results, error, time.perf_counter() - started)
        if isinstance(error, (ValueError, FileNotFoundError, CheckpointError, FloatingPointError)) and not full_error():
            log.error("error: %s", one_line(error))  # a check's message names the problem and the fix
        elif results["reason"].startswith("DiskFull") and not full_error():  # names the folder and the space
            log.error("run failed: %s", results["reason"])
        else:
            log.exception("run failed: %s", error)
        try:
            write_results(run_dir, results)
        except DiskFull:  # not even the reserve was left: the next start says that this launch died
            log.error("could not record the failure in %s either: the disk is full", run_dir / RESULTS_FILE)
        if hydra_cfg.mode != RunMode.MULTIRUN:
            sys.exit(1)
        return outcome("failed", one_line_reason(results["reason"]), started)
    write_results(run_dir, results)
    if results["status"] == "interrupted":
        log.warning("interrupted: %s", results["reason"])
        if hydra_cfg.mode != RunMode.MULTIRUN:
            sys.exit(143)  # 128 + SIGTERM, what a scheduler expects from a preempted job
        if "SLURM_JOB_ID" in os.environ:  # a sweep's SLURM job: its sweep must not report it finished
            raise JobInterrupted(f"{results['reason']}. SLURM resumes a requeued job (scontrol requeue, preemption) "
                                 f"from last.pt on its own, after this sweep has returned: so the sweep ends with "
                                 f"this error. Run the same sweep again once SLURM has finished the job; completed "
                                 f"jobs are skipped ({run_dir / RESULTS_FILE} says how it ended)")
        return outcome("interrupted", results["reason"], started)
    final = results["final"]
    log.info("done: top-1 %.2f, top-5 %.2f, %.1f s; %s", final["top1"], final["top5"], results["wall_time_s"],
             run_dir / "results.json")
    return outcome("done", f"top-1 {final['top1']:.2f}", started)


def one_line_reason(reason: str) -> str:
    """A recorded ``Type: message`` reason on one line, without the type of a check's error (its message says it)."""
    text = " ".join(str(reason).split())
    return re.sub(r"^(ValueError|FileNotFoundError|CheckpointError|FloatingPointError): ", "", text)


def full_error() -> bool:
    """Hydra's own switch: ``HYDRA_FULL_ERROR=1`` shows the traceback of a bad input too."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def one_line(error: BaseException) -> str:
    """The message on one line; an error re-raised from a DataLoader worker by its last line (the worker's own
    message, after the worker's traceback)."""
    text = str(error).strip()
    if "Original Traceback" in text:
        text = re.sub(r"^[\w.]+: ", "", text.splitlines()[-1])
    return " ".join(text.split())


def refuse(error: BaseException, cfg: DictConfig, hydra_cfg, started: float) -> Dict[str, Any]:
    """A bad input: one line, exit status 1 for a single run. The job's record says ``status: failed`` with the
    reason where one is expected: in a sweep (which goes on), and where the run dir holds this config's unfinished
    record (a retried or resumed job); a fresh single run's dir is left without one. A job completed for this very
    config is skipped, as ever (``train.force=true`` re-runs it)."""
    run_dir = Path(hydra_cfg.runtime.output_dir)
    results = initial_record(cfg, hydra_cfg, run_dir)
    try:
        previous = read_results(run_dir) if (run_dir / RESULTS_FILE).is_file() else None
    except ValueError:  # an unreadable record: this launch's says what went wrong
        previous = {"config": results["config"]}
    ours = isinstance(previous, dict) and same_job(previous.get("config") or {}, results["config"])
    if ours and previous.get("status") == "completed" and previous.get("history") and not cfg.train.force:
        log.info("%s is already completed for this config: skipped (train.force=true re-runs)",
                 run_dir / RESULTS_FILE)
        return outcome("skipped", "already completed for this config (train.force=true re-runs it)", started)
    if full_error():
        log.exception("error: %s", one_line(error))
    else:
        log.error("error: %s", one_line(error))
    if (ours and previous.get("status") != "completed") or (previous is None and hydra_cfg.mode == RunMode.MULTIRUN):
        mark_failed(results, error, time.perf_counter() - started)
        write_results(run_dir, results)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        sys.exit(1)
    return outcome("failed", one_line(error), started)


class JobInterrupted(RuntimeError):
    """A SLURM job of a sweep stopped by a signal with its checkpoint saved: submitit then reports it failed, so
    the sweep exits non-zero instead of 0 while the job waits in the queue to resume."""


def teardown_distributed() -> None:
    """Leaves the process group a run joined; a process that never imported the training code joined none."""
    distributed = sys.modules.get("src.train.distributed")
    if distributed is not None:
        distributed.teardown()


def share_sweep_stamp(argv: List[str], environ=os.environ) -> None:
    """``torchrun ... -m src.run -m``: every rank would resolve the sweep dir's time stamp at its own instant and
    write into its own folder. Rank 0 puts its stamp in torchrun's own key-value store, the others read it (they
    wait for it there), and all use it (``src.config.sweep_stamp``). Nothing happens outside torchrun or a
    multirun."""
    multirun = any(arg in ("-m", "--multirun") for arg in argv[1:])
    if not multirun or int(environ.get("WORLD_SIZE", "1")) < 2 or "MASTER_ADDR" not in environ:
        return
    from datetime import timedelta

    from torch.distributed import TCPStore

    from src.config import SWEEP_STAMP_ENV, sweep_stamp

    store = TCPStore(environ["MASTER_ADDR"], int(environ["MASTER_PORT"]), is_master=False,
                     timeout=timedelta(seconds=120))
    key = f"fusionvit/sweep_stamp/{environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    if environ.get("RANK") == "0":
        store.set(key, sweep_stamp())
    environ[SWEEP_STAMP_ENV] = store.get(key).decode()


def expand_home(arg: str) -> str:
    """``data.root=~/x`` (and each ``~`` path of a sweep's comma list) with the home folder written out, as a shell
    does for a word that starts with ``~`` but not after ``KEY=``: Hydra's grammar has no ``~``."""
    key, equals, value = arg.partition("=")
    if not equals or arg.startswith("-") or "~" not in value or value[:1] in "'\"[":
        return arg
    return key + equals + ",".join(os.path.expanduser(item) if item.startswith("~") else item
                                   for item in value.split(","))


def cli() -> None:
    """``python -m src.run ARGS``: a command line that cannot compose exits 2 with one line, before Hydra starts."""
    from src.preflight import BadInput, UsageError, check_command_line

    sys.argv = agent.agent_argv(sys.argv)  # under a W&B sweep agent; unchanged otherwise
    sys.argv = [sys.argv[0], *map(expand_home, sys.argv[1:])]
    try:
        check_command_line(sys.argv[1:])
    except BadInput as error:
        if full_error():
            traceback.print_exc()
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2 if isinstance(error, UsageError) else 1)
    share_sweep_stamp(sys.argv)
    code = 0
    try:
        main()
    except SystemExit as exit:  # Hydra's own exit after a failed launch still closes the sweep with its table
        code = exit.code
    finally:
        teardown_distributed()
    closing = multirun.close()  # the table, whatever ended the sweep
    if code or closing:
        sys.exit(code or closing)


if __name__ == "__main__":
    cli()
