"""Rows that are not a result yet. A row (one config over its seeds) is flagged, shown with the reason in
place of its top-1 and left out of the comparisons and of the choice of the best row, when

- **not converged**: a run's validation top-1 (``history``) over its last k epochs (default 3) spans more
  than ``converge_tol`` points (max - min, default 1.0). The target is a curve flat within about a point at
  the end; one that still rises (or swings) there gives a final number that depends on when training
  stopped. The span of the window bounds any rise inside it, and needs only k epochs; a slower climb (under
  tol / (k - 1) points an epoch) passes, so widen the window to catch one. A row is not converged when any
  of its runs is. A run with fewer than k epochs of history (a one-epoch smoke run, a W&B run without
  history) cannot be judged: the check is skipped for it, its number is printed, and a line under the table
  names the rows not judged.
- **seeds disagree**: the std over seeds (ddof 1, the ± printed) is above ``max_seed_std`` (default 3.0
  points), or a run lies more than ``collapse_gap`` points (default 10) below the median of the row's other
  runs (a collapsed seed). The target is a std of at most about 2 points over three seeds with no collapsed
  seed; 3.0 leaves room for the std's own noise (with three seeds of true std 2, the sample std exceeds 3
  about one time in ten, exp(-2.25)), and a collapsed seed is named even with many seeds, where it moves the
  std little.
"""
import math
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

import pandas as pd

NOT_CONVERGED, SEEDS_DISAGREE = "not converged", "seeds disagree"
NAN = float("nan")


@dataclass(frozen=True)
class Checks:
    """The thresholds of both checks, in top-1 points (collate's --converge-epochs, --converge-tol,
    --max-seed-std, --collapse-gap)."""
    converge_epochs: int = 3
    converge_tol: float = 1.0
    max_seed_std: float = 3.0
    collapse_gap: float = 10.0

    def __post_init__(self):
        if self.converge_epochs < 2:
            raise ValueError(f"converge_epochs {self.converge_epochs}: the span of fewer than 2 epochs is always 0; "
                             f"give 2 or more (default 3)")
        for name in ("converge_tol", "max_seed_std", "collapse_gap"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} {getattr(self, name)}: give a number of top-1 points >= 0")


DEFAULT_CHECKS = Checks()  # frozen: one shared default is safe


@dataclass
class RowCheck:
    """One row's verdict: ``flag`` is "" for a result; ``converged`` is None when no verdict was possible."""
    flag: str
    converged: Optional[bool]
    last_epochs_span: float  # the largest among the runs judged (NaN: none judged)


def val_top1_curve(history: Any) -> List[float]:
    """A run's validation top-1 per epoch in epoch order (the last record of an epoch counts); epochs
    without a value are left out."""
    by_epoch = {}
    for index, record in enumerate(history if isinstance(history, list) else []):
        top1 = record.get("top1")
        if top1 is not None and not math.isnan(top1):
            epoch = record.get("epoch")
            by_epoch[index if epoch is None else epoch] = float(top1)
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def last_epochs_span(history: Any, epochs: int) -> float:
    """max - min of the last ``epochs`` validation top-1 values; NaN with fewer."""
    curve = val_top1_curve(history)
    if len(curve) < epochs:
        return NAN
    return max(curve[-epochs:]) - min(curve[-epochs:])


def convergence(runs: pd.DataFrame, checks: Checks):
    """(converged: True / False / None for not judged, the largest span among the runs judged)."""
    histories = runs["history"] if "history" in runs else [None] * len(runs)
    spans = [last_epochs_span(history, checks.converge_epochs) for history in histories]
    judged = [span for span in spans if not math.isnan(span)]
    worst = max(judged, default=NAN)
    if judged and worst > checks.converge_tol:
        return False, worst
    return (True if len(judged) == len(spans) else None), worst


def seed_disagreement(runs: pd.DataFrame, checks: Checks) -> str:
    """"std 12.30; seed 2 at 25.00, others' median 85.50", or "" when the seeds agree."""
    top1 = pd.to_numeric(runs["top1"], errors="coerce").to_numpy(float)
    problems = []
    std = pd.Series(top1).std()  # ddof 1, NaN for one run: as the table's top1_std
    if std > checks.max_seed_std:
        problems.append(f"std {std:.2f}")
    for index, (seed, value) in enumerate(zip(runs["seed"], top1)):
        others = pd.Series(top1).drop(index).median()
        if others - value > checks.collapse_gap:
            problems.append(f"seed {seed} at {value:.2f}, others' median {others:.2f}")
    return "; ".join(problems)


def check_row(runs: pd.DataFrame, checks: Checks) -> RowCheck:
    converged, span = convergence(runs, checks)
    problems = []
    if converged is False:
        problems.append(f"{NOT_CONVERGED} (last {checks.converge_epochs} epochs span {span:.2f})")
    disagreement = seed_disagreement(runs, checks)
    if disagreement:
        problems.append(f"{SEEDS_DISAGREE} ({disagreement})")
    return RowCheck(flag="; ".join(problems), converged=converged, last_epochs_span=span)


def check_rows(groups: Sequence[pd.DataFrame], checks: Checks) -> pd.DataFrame:
    """Columns ``flag``, ``converged``, ``last_epochs_span``, one row per group (the table's order)."""
    checked = [check_row(group, checks) for group in groups]
    return pd.DataFrame({"flag": [row.flag for row in checked],
                         "converged": pd.Series([row.converged for row in checked], dtype=object),
                         "last_epochs_span": [row.last_epochs_span for row in checked]})


def flag_kinds(flag: str) -> str:
    """"not converged, seeds disagree": the kinds in a flag, without the numbers (for plot legends)."""
    return ", ".join(kind for kind in (NOT_CONVERGED, SEEDS_DISAGREE) if kind in flag)


def points(value: float) -> str:
    return "1 point" if value == 1 else f"{value:g} points"


def flag_notes(table: pd.DataFrame, checks: Checks) -> List[str]:
    """One line per kind of flag in ``table`` (columns label, flag, converged, epochs): what it means and
    how to fix it; and one naming the rows whose convergence could not be judged."""
    def rows(mask) -> str:
        return "; ".join(table.loc[mask, "label"])

    lines = []
    not_converged = table["converged"].eq(False)
    if not_converged.any():
        epochs = int(round(table.loc[not_converged, "epochs"].max())) if "epochs" in table else 0
        longer = f"e.g. train.epochs={2 * epochs}; these runs had {epochs}" if epochs else "train.epochs=..."
        lines.append(f"Not converged ({rows(not_converged)}): a run's validation top-1 moved more than "
                     f"{points(checks.converge_tol)} over its last {checks.converge_epochs} epochs, so its "
                     f"final number depends on when training stopped; not printed, not compared. Fix: train "
                     f"longer ({longer}) and look at the runs' val/top1 per epoch in metrics.csv (thresholds: "
                     f"collate --converge-epochs, --converge-tol).")
    disagree = table["flag"].str.contains(SEEDS_DISAGREE, regex=False)
    if disagree.any():
        lines.append(f"Seeds disagree ({rows(disagree)}): std over seeds above {points(checks.max_seed_std)} or a "
                     f"seed more than {points(checks.collapse_gap)} below the others' median; not printed, not "
                     f"compared. Fix: look at each seed's val/top1 per epoch in metrics.csv for a collapsed or "
                     f"diverged run, then rerun it or add seeds (thresholds: collate --max-seed-std, "
                     f"--collapse-gap).")
    not_judged = table["converged"].isna()
    if not_judged.any():
        lines.append(f"Convergence not judged ({rows(not_judged)}): runs with fewer than "
                     f"{checks.converge_epochs} epochs of validation history; their numbers are printed unchecked.")
    return lines
