"""The loop's logs: ``metrics.csv`` in the run dir (always, the truth), Weights & Biases (its mirror,
``src.train.wandb_logger``) and TensorBoard (``logger=tensorboard``), behind one ``Loggers``.

Every logged step and every epoch is one CSV row (``kind`` step or epoch, ``step``, then the metric columns), so
every curve W&B draws can be drawn from the run dir alone. A resumed run first rewrites the file (atomically)
without the rows past its checkpoint, which the resumed run logs again, and without a row a kill cut short.

``src.run`` imports this module before Hydra answers ``--help``: wandb and torch load only when a logger starts.
"""
import csv
import io
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .files import write_atomic

METRICS_FILE = "metrics.csv"


def flatten(config: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# -- metrics.csv and TensorBoard ----------------------------------------------------------------------------
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


STEP_COLUMNS = ["train/loss", "train/lr", "train/images_per_s", "train/data_wait_frac"]
EPOCH_COLUMNS = ["epoch", "val/loss", "val/top1", "val/top5", "train/epoch_loss", "train/epoch_time_s",
                 "train/epoch_images_per_s", "val/ema_top1", "train/epoch_data_wait_frac", "selection/top1",
                 "selection/loss"]


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
