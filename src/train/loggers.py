"""The loop's logs: Weights & Biases (which must never hang nor kill training), ``metrics.csv`` in the run dir
(always) and TensorBoard (``logger=tensorboard``), behind one ``Loggers``.

W&B's mode is decided before ``wandb.init``, because an online init without a key waits at a login prompt, and
with a key but no network blocks ~90 s: ``auto`` is online only when ``wandb.login(prompt=False,
verify=False)`` finds a key. A failing online init falls back to offline, a failing offline init to no W&B,
each with a warning. W&B's files live under the run dir (``dir=run_dir``).

A kill keeps what W&B has written to the run's ``.wandb`` file, and wandb-core writes it out only every
``x_transaction_log_flush_interval`` (15 s by default; a killed launch's core exits without writing the rest).
So W&B writes it out every ``FLUSH_INTERVAL_S`` here, and each epoch row is committed and waited for until it is
in the file; a resumed offline run first logs again the rows of ``metrics.csv`` that no earlier launch's file
holds (see docs/wandb.md).

Every logged step and every epoch is one CSV row (``kind`` step or epoch, ``step``, then the metric columns), so
every curve W&B draws can be drawn from the run dir alone. A resumed run first rewrites the file (atomically)
without the rows past its checkpoint, which the resumed run logs again, and without a row a kill cut short.

``src.run`` imports this module before Hydra answers ``--help``: wandb and torch load only when a logger starts.
"""
import csv
import io
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .files import write_atomic

log = logging.getLogger(__name__)
MODES = ("auto", "online", "offline", "disabled")
FLUSH_SETTING = "x_transaction_log_flush_interval"  # wandb >= 0.2x: seconds between writes of the .wandb file
FLUSH_INTERVAL_S = 0.1
FLUSH_TIMEOUT_S = 10.0  # an epoch row not on disk by then: warn, and stop waiting for the rest of the launch
METRICS_FILE = "metrics.csv"


# -- Weights & Biases ----------------------------------------------------------------------------------------
def api_key_configured() -> bool:
    import wandb

    try:
        return bool(wandb.login(prompt=False, verify=False))
    except Exception:  # noqa: BLE001 - any failure to find a key means "not online"
        return False


def resolve_mode(mode: str) -> str:
    """The mode to start W&B in. ``online`` without a key would wait at a login prompt on a terminal, so it
    becomes offline with a warning, like ``auto``."""
    if mode not in MODES:
        raise ValueError(f"logger.mode={mode!r}: pick one of {', '.join(MODES)}")
    if mode == "auto" and os.environ.get("WANDB_MODE") in ("offline", "disabled", "dryrun"):
        return "disabled" if os.environ["WANDB_MODE"] == "disabled" else "offline"
    if mode in ("offline", "disabled"):
        return mode
    if api_key_configured():
        return "online"
    if mode == "online":
        warnings.warn("W&B online start failed (no API key configured: run `wandb login` or set "
                      "WANDB_API_KEY); logging offline instead, upload later with `wandb sync`", stacklevel=1)
    return "offline"


def flush_settings() -> Dict[str, float]:
    """The setting that makes wandb-core write the ``.wandb`` file out often, where this wandb has it."""
    import wandb

    return {FLUSH_SETTING: FLUSH_INTERVAL_S} if FLUSH_SETTING in getattr(wandb.Settings, "model_fields", {}) else {}


def trail_rows(path: Path) -> List[Tuple[int, Dict[str, Any]]]:
    """``metrics.csv``'s rows as W&B logged them: (step, metrics), one per step (a step's row and its epoch's
    row are one W&B history row), in step order; empty cells and the CSV's own columns left out."""
    with open(path, newline="") as file:
        rows = [row for row in csv.DictReader(file) if None not in row and None not in row.values()]
    by_step: Dict[int, Dict[str, Any]] = {}
    for row in rows:
        metrics = by_step.setdefault(int(row["step"]), {})
        for key, value in row.items():
            if key not in ("kind", "step", "time_s") and value != "":
                metrics[key] = int(value) if key == "epoch" else float(value)
    return sorted(by_step.items())


def shared_service_hint(error: Exception) -> str:
    """Why a resumed run's W&B start says its run ID is in use, where that is the cause: the launch reaches a
    shared wandb-core through WANDB_SERVICE, which still holds the stream of the killed launch it resumes."""
    if "is in use" not in str(error) or not os.environ.get("WANDB_SERVICE"):
        return ""
    return (" (WANDB_SERVICE points this launch at a shared wandb-core that still holds this run from a launch "
            "that was killed: unset WANDB_SERVICE for the resume, or restart that service)")


class WandbLogger:
    """``log_step`` / ``summary`` / ``finish``; every call is a no-op once W&B is off or has failed. An epoch row
    (``epoch`` among the metrics) is committed at once and is in the ``.wandb`` file when ``log_step`` returns."""

    def __init__(self, logger_cfg, run_dir: Path, config: Dict[str, Any], group: Optional[str], name: str,
                 run_id: Optional[str] = None, job_type: Optional[str] = None, tags: Optional[list] = None):
        self.run = None
        self.info: Optional[Dict[str, Any]] = None  # mode, run id and folder, for results.json
        self.log_tail = None  # this launch's .wandb file as written out so far (src.train.wandb_files.LogTail)
        self.mode = resolve_mode(logger_cfg.mode) if logger_cfg.name == "wandb" else "disabled"
        if self.mode == "disabled":
            return
        attempts = [self.mode] + (["offline"] if self.mode == "online" else [])
        for mode in attempts:
            try:
                self.run = self._init(logger_cfg, mode, Path(run_dir), config, group, name, run_id, job_type,
                                      list(logger_cfg.tags) if tags is None else tags)
                self.mode = mode
                self.info = {"mode": mode, "run_id": self.run.id, "dir": str(Path(self.run.dir).parent)}
                if flush_settings():
                    from .wandb_files import LogTail

                    self.log_tail = LogTail(self.run.settings.sync_file)
                return
            except Exception as error:  # noqa: BLE001 - W&B must never stop a training run
                warnings.warn(f"W&B {mode} start failed ({type(error).__name__}: {error}){shared_service_hint(error)}; "
                              f"{'trying offline' if mode == 'online' else 'continuing without W&B'}",
                              stacklevel=1)
        self.mode = "disabled"

    @staticmethod
    def _init(logger_cfg, mode: str, run_dir: Path, config: Dict[str, Any], group: Optional[str], name: str,
              run_id: Optional[str], job_type: Optional[str], tags: list):
        import wandb

        run_dir.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(init_timeout=logger_cfg.init_timeout, console="off", x_disable_stats=True,
                                  silent=True, **flush_settings())
        return wandb.init(project=logger_cfg.project, entity=logger_cfg.entity, group=group, name=name,
                          config=config, tags=tags, job_type=job_type, dir=str(run_dir), mode=mode,
                          reinit="finish_previous", settings=settings,
                          id=run_id, resume="allow" if run_id else None)  # a resumed run continues its W&B run

    def _safely(self, action, *args, **kwargs) -> None:
        if self.run is None:
            return
        try:
            action(*args, **kwargs)
        except Exception as error:  # noqa: BLE001
            warnings.warn(f"W&B call failed ({type(error).__name__}: {error}); continuing without W&B",
                          stacklevel=1)
            self.run = None

    def log_step(self, metrics: Dict[str, float], step: int) -> None:
        epoch_row = "epoch" in metrics  # committed now: with a step given, W&B holds a row until the next step
        self._safely(lambda: self.run.log(metrics, step=step, commit=True if epoch_row else None))
        if epoch_row:
            self.flush(step)

    def flush(self, step: int) -> None:
        """Waits until the row at ``step`` is in this launch's ``.wandb`` file (wandb-core writes the file out every
        ``FLUSH_INTERVAL_S``), so that no kill from now on takes it. Past ``FLUSH_TIMEOUT_S`` it warns and stops
        waiting, for the rest of the launch."""
        if self.run is None or self.log_tail is None:
            return
        deadline = time.monotonic() + FLUSH_TIMEOUT_S
        try:
            self.log_tail.read()
            while self.log_tail.last_step < step:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"step {step} not in {self.log_tail.path} after {FLUSH_TIMEOUT_S:.0f} s")
                time.sleep(FLUSH_INTERVAL_S / 4)
                self.log_tail.read()
        except Exception as error:  # noqa: BLE001 - W&B must never stop a training run
            warnings.warn(f"W&B's .wandb file could not be followed ({type(error).__name__}: {error}); no longer "
                          f"waiting for each epoch to be written out: a kill can take the last rows from it "
                          f"(metrics.csv keeps them; a resumed run logs them again)", stacklevel=1)
            self.log_tail = None

    def log_missing(self, rows: Sequence[Tuple[int, Dict[str, Any]]]) -> None:
        """Offline, before this launch logs anything: logs again the rows (``trail_rows`` of ``metrics.csv``, cut
        back to the checkpoint) at steps that no earlier launch's ``.wandb`` file of this run holds, the rows a kill
        took from W&B, so that the launches' files together hold every row the run dir has."""
        if self.run is None or self.mode != "offline" or not rows:
            return
        from .wandb_files import LogTail, launch_files

        this_launch = Path(self.run.settings.sync_file)
        try:
            kept = {step for path in launch_files(this_launch.parent.parent, self.run.id) if path != this_launch
                    for step in LogTail(path).read()}
        except Exception as error:  # noqa: BLE001 - an unreadable earlier file must not stop the run
            warnings.warn(f"W&B: the earlier launches' .wandb files could not be read ({type(error).__name__}: "
                          f"{error}); the rows a kill took from them are not logged again", stacklevel=1)
            return
        missing = [(step, metrics) for step, metrics in rows if step not in kept]
        for step, metrics in missing:
            self._safely(lambda row, at: self.run.log(row, step=at, commit=True), metrics, step)
        if missing and self.run is not None:
            log.info("W&B: logged again %d row(s) (steps %d-%d) that a killed launch had not written out",
                     len(missing), missing[0][0], missing[-1][0])
            self.flush(missing[-1][0])

    @property
    def run_id(self) -> Optional[str]:
        return self.info["run_id"] if self.info else None

    def summary(self, values: Dict[str, Any]) -> None:
        self._safely(lambda: self.run.summary.update(values))

    def mark_preempting(self) -> None:
        """A sweep agent re-queues a run marked preempting instead of counting it as failed."""
        self._safely(lambda: self.run.mark_preempting())

    def finish(self, exit_code: int = 0) -> None:
        self._safely(lambda: self.run.finish(exit_code=exit_code))
        self.run = None


def flatten(config: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# -- metrics.csv and TensorBoard ----------------------------------------------------------------------------
STEP_COLUMNS = ["train/loss", "train/lr", "train/images_per_s", "train/data_wait_frac"]
EPOCH_COLUMNS = ["epoch", "val/loss", "val/top1", "val/top5", "train/epoch_loss", "train/epoch_time_s",
                 "train/epoch_images_per_s", "val/ema_top1", "train/epoch_data_wait_frac"]


def metric_columns(num_branches: int) -> List[str]:
    return (["kind", "step", "time_s"] + STEP_COLUMNS + EPOCH_COLUMNS
            + [f"val/top1_branch{i}" for i in range(num_branches)])


class CsvTrail:
    """``metrics.csv``: appended and flushed row by row. On a resume it is cut back to the checkpoint, and the
    epoch rows a kill kept from it (a kill after the checkpoint, before the row) are written anew from the
    checkpoint's history, so that it has one row per finished epoch; ``time_s`` goes on from the earlier
    launches' time."""

    def __init__(self, run_dir: Path, num_branches: int, resume_step: int, resume_epoch: int,
                 epoch_rows: Sequence[Tuple[int, Dict[str, Any]]] = (), time_offset_s: float = 0.0):
        self.path = Path(run_dir) / METRICS_FILE
        self.columns = metric_columns(num_branches)
        kept = self._rows_before(resume_step, resume_epoch)
        logged = {int(row["epoch"]) for row in kept if row["kind"] == "epoch"}
        restored = [{"kind": "epoch", "step": step, "time_s": "", **metrics} for step, metrics in epoch_rows
                    if int(metrics["epoch"]) not in logged and int(metrics["epoch"]) < resume_epoch]
        rows = sorted(kept + restored, key=lambda row: (int(row["step"]), row["kind"] == "epoch"))
        text = io.StringIO()
        writer = csv.DictWriter(text, self.columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        write_atomic(self.path, lambda file: file.write(text.getvalue().encode()))
        self.file = open(self.path, "a", newline="")
        self.writer = csv.DictWriter(self.file, self.columns, extrasaction="ignore")
        self.started = time.time() - time_offset_s

    def _rows_before(self, step: int, epoch: int) -> List[Dict[str, str]]:
        """Rows of an earlier part of this run up to its checkpoint; none for a new run."""
        if step == 0 or not self.path.is_file():
            return []
        with open(self.path, newline="") as file:
            rows = [row for row in csv.DictReader(file) if None not in row and None not in row.values()]
        return [row for row in rows if int(row["step"]) <= step
                and (row["kind"] != "epoch" or int(row["epoch"]) < epoch)]

    def log_step(self, metrics: Dict[str, float], step: int) -> None:
        kind = "epoch" if "epoch" in metrics else "step"
        self.writer.writerow({"kind": kind, "step": step, "time_s": round(time.time() - self.started, 3), **metrics})
        self.file.flush()

    def finish(self) -> None:
        self.file.close()


class TensorboardTrail:
    """``logger=tensorboard``: scalars under ``RUN_DIR/tensorboard``, tagged as in W&B (``val/top1``)."""

    def __init__(self, run_dir: Path, resume_step: int):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            raise ImportError("logger=tensorboard needs the tensorboard package: pip install tensorboard "
                              "(or pick logger=wandb / logger=none)") from error
        # purge_step: events past the checkpoint, from before a kill, are dropped when the run resumes
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"),
                                    purge_step=resume_step + 1 if resume_step else None)

    def log_step(self, metrics: Dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            if key != "epoch":
                self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()

    def finish(self) -> None:
        self.writer.close()


# -- all of them -------------------------------------------------------------------------------------------
class Loggers:
    """The loop's one logger: W&B (or nothing) plus the local trails; ``run_id``/``info`` are W&B's."""

    def __init__(self, wandb, trails: List[Any]):
        self.wandb, self.trails = wandb, trails
        csv_trail = next((trail for trail in trails if isinstance(trail, CsvTrail)), None)
        if csv_trail is not None:  # a resumed run's rows up to its checkpoint: what a kill took from W&B
            self.wandb.log_missing(trail_rows(csv_trail.path))

    @property
    def run_id(self) -> Optional[str]:
        return self.wandb.run_id

    @property
    def info(self) -> Optional[Dict[str, Any]]:
        return self.wandb.info

    def log_step(self, metrics: Dict[str, float], step: int) -> None:
        self.wandb.log_step(metrics, step)
        for trail in self.trails:
            trail.log_step(metrics, step)

    def summary(self, values: Dict[str, Any]) -> None:
        self.wandb.summary(values)

    def mark_preempting(self) -> None:
        self.wandb.mark_preempting()

    def finish(self, exit_code: int = 0) -> None:
        self.wandb.finish(exit_code)
        for trail in self.trails:
            trail.finish()



def preset_tags(logger_cfg, choices: Dict[str, Any]) -> Tuple[Optional[str], List[str]]:
    """(job type, tags): the ablation preset (``logger.job_type``, set by the W&B sweep files, else the
    ``+experiment`` choice), added to ``logger.tags``."""
    preset = logger_cfg.get("job_type") or choices.get("experiment")
    tags = list(logger_cfg.get("tags") or [])
    if preset and preset not in tags:
        tags.append(preset)
    return preset, tags
