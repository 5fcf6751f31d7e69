"""Logs that need no W&B: ``metrics.csv`` in the run dir (always) and TensorBoard (``logger=tensorboard``).

Every logged step and every epoch is one CSV row (``kind`` step or epoch, ``step``, then the metric columns), so
every curve W&B draws can be drawn from the run dir alone. A resumed run first rewrites the file (atomically)
without the rows past its checkpoint, which the resumed run logs again, and without a row a kill cut short.
"""
import csv
import io
import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from .results import write_atomic

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.csv"
STEP_COLUMNS = ["train/loss", "train/lr", "train/images_per_s"]
EPOCH_COLUMNS = ["epoch", "val/loss", "val/top1", "val/top5", "train/epoch_loss", "train/epoch_time_s",
                 "train/epoch_images_per_s", "val/ema_top1"]


def metric_columns(num_branches: int) -> List[str]:
    return (["kind", "step", "time_s"] + STEP_COLUMNS + EPOCH_COLUMNS
            + [f"val/top1_branch{i}" for i in range(num_branches)])


class CsvTrail:
    """``metrics.csv``: appended and flushed row by row."""

    def __init__(self, run_dir: Path, num_branches: int, resume_step: int, resume_epoch: int):
        self.path = Path(run_dir) / METRICS_FILE
        self.columns = metric_columns(num_branches)
        kept = self._rows_before(resume_step, resume_epoch)
        text = io.StringIO()
        writer = csv.DictWriter(text, self.columns)
        writer.writeheader()
        writer.writerows(kept)
        write_atomic(self.path, lambda file: file.write(text.getvalue().encode()))
        self.file = open(self.path, "a", newline="")
        self.writer = csv.DictWriter(self.file, self.columns, extrasaction="ignore")
        self.started = time.time()

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


class Loggers:
    """The loop's one logger: W&B (or nothing) plus the local trails; ``run_id``/``info`` are W&B's."""

    def __init__(self, wandb, trails: List[Any]):
        self.wandb, self.trails = wandb, trails

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
