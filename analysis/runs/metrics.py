"""Metrics as finite floats: a NaN, inf or string where a run's record holds an accuracy, a loss or a cost (a
diverged run, a hand edit, a float32 written as text) becomes NaN in its row, so that no mean turns inf and no
``seeds disagree`` flag fires on it, and is counted and named in one warning per field. A completed run without a
finite final top-1 leaves the table (its row's n counts the others); any other such value leaves only that
column's mean (and, in the history, the convergence check and the curves).
"""
import math
from collections import defaultdict
from typing import Any, Callable, Dict, List, Optional, Tuple

FINAL_TOP1 = "final.top1"
HISTORY_TOP1 = "history top1"
CONSEQUENCE = {FINAL_TOP1: "left out of the table (each row's n counts its runs with a finite top-1)",
               HISTORY_TOP1: "those epochs are left out of the convergence check and the curves"}
OTHERWISE = "left out of that column's mean"
HISTORY_NUMBERS = ("train_loss", "val_loss", "top5", "lr", "epoch_time_s", "images_per_s", "data_wait_frac",
                   "ema_top1")
Problem = Tuple[str, str]  # (field, what it held): ("final.top1", "NaN")


def as_finite(value: Any) -> Optional[float]:
    """``value`` as a finite float; None when it is not one (NaN, inf, "abc", a bool, null)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)  # numeric strings too, as pandas' to_numeric read them before
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def described(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, float):
        return f"{value}".replace("nan", "NaN")
    return repr(value)


class MetricReader:
    """Reads a record's metrics as finite floats (NaN where not), noting each value that was not one."""

    def __init__(self):
        self.problems: List[Problem] = []

    def __call__(self, value: Any, name: str, required: bool = False, where: str = "") -> Optional[float]:
        """``required``: a missing value (null or absent) is a problem too; ``where`` says where in the field."""
        number = as_finite(value)
        if number is not None:
            return number
        if value is not None or required:
            self.problems.append((name, f"{described(value)}{where}"))
            return math.nan
        return None

    def values(self, values: Any, name: str, where: str = "") -> Optional[List[float]]:
        return None if values is None else [self(value, name, where=where) for value in values]

    def history(self, history: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Each epoch row with its numbers finite or NaN; a missing top1 becomes NaN, so every row has one."""
        cleaned = []
        for epoch in history:
            where = f" at epoch {epoch.get('epoch')}"
            row = dict(epoch, top1=self(epoch.get("top1"), HISTORY_TOP1, required=True, where=where))
            for key in HISTORY_NUMBERS:
                if key in epoch:
                    row[key] = self(epoch[key], f"history {key}", where=where)
            if "top1_branch" in epoch:
                row["top1_branch"] = self.values(epoch["top1_branch"], "history top1_branch", where)
            cleaned.append(row)
        return cleaned


def warn_unmeasured(rows: List[Dict[str, Any]], warn: Callable[[str], None],
                    source: Callable[[str], str] = str) -> List[Dict[str, Any]]:
    """Pops each row's ``metric_problems``; for completed runs warns once per field, naming every run (by
    ``source(run_dir)``), and returns the rows without the completed ones that lack a finite final top-1."""
    by_field: Dict[str, Dict[str, List[str]]] = defaultdict(lambda: defaultdict(list))
    kept = []
    for row in rows:
        problems = row.pop("metric_problems", [])
        if row.get("status") != "completed":
            kept.append(row)  # failed runs are listed apart, not measured
            continue
        for name, what in problems:
            by_field[name][source(row["run_dir"])].append(what)
        if FINAL_TOP1 not in {name for name, _ in problems}:
            kept.append(row)
    for name, runs in by_field.items():
        listed = ", ".join(f"{', '.join(whats)} in {run}" for run, whats in runs.items())
        plural = "1 run has" if len(runs) == 1 else f"{len(runs)} runs have"
        warn(f"{plural} no finite {name} ({listed}): {CONSEQUENCE.get(name, OTHERWISE)}")
    return kept
