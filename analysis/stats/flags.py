"""Rows that are not a result yet. A row (one config over its seeds) is flagged, shown with the reason in
place of its top-1 and left out of the comparisons and of the choice of the best row, when

- **not converged**: a run's validation top-1 (``history``) still moves over its last k epochs (default 3). The
  least-squares slope b of those k values against the epoch gives the change the trend implies over the window, rise
  = b (k - 1). One evaluation on n validation images has binomial noise sigma = 100 sqrt(p (1 - p) / n) points (p the
  window's mean top-1 / 100), so the rise has standard error SE = (k - 1) sigma / sqrt(sum (x - mean x)^2). The run
  is not converged when |rise| > ``converge_tol`` and |rise| > CONVERGE_Z SE (2): a trend the validation noise cannot
  explain and larger than the tail of a schedule gives. ``converge_tol`` (3.0 points) is that budget, the same for
  every row: a run at the end of its cosine schedule still climbs, and the tol sits a margin above the largest such
  climb measured on the proxy, so that a floating-point perturbation (another CPU, another thread count) does not
  carry a run across it, while a curve climbing half again as fast, or falling, is flagged (the measured rises:
  docs/analysis.md, "not converged"). The trend, unlike max - min, does not flip on a few images. With the validation
  size unknown (older results, W&B runs) only the tol condition applies. Where a run's validation images share
  a source (``units``: the proxy's 28 renders of each held-out digit), sigma^2 is the binomial variance times the
  run's design effect, measured on its final predictions (``val_predictions.npz``): the record has top-1 alone for
  the earlier epochs, so the final epoch's design effect stands for every epoch of the window (its size on the
  proxy: docs/analysis.md, "The unit of noise"). A row is not converged when any of its runs is. A run with fewer
  than k epochs of history (a one-epoch smoke run, a W&B run without history) cannot be judged: the check is
  skipped for it, its number is printed, and a line under the table names the rows not judged.
- **seeds disagree**: the row's variance over seeds s^2 (ddof 1, the ± printed) is larger than seed and validation
  noise predict. What seed noise is, only the table's other rows can say: their pooled variance over seeds, sum (n_j -
  1) s_j^2 / sum (n_j - 1) over the rows with two or more seeds (rows with a collapsed seed left out), floored at the
  mean binomial variance sigma^2 of this row's runs, times each run's design effect where its images share a source
  (seeds cannot agree better than one evaluation's noise, so a pool that happens to lie below it is no yardstick). F =
  s^2 / expected is tested against F(n - 1, the pool's df); p < DISAGREE_P (0.001) flags: once per thousand rows by
  chance, so an ablation's few rows are almost never flagged for nothing. The pool's df stay in the test even when the
  floor is the larger: the binomial variance bounds seed noise from below, it does not measure it (seeds spread well
  beyond one evaluation's sd), so judging against it as if known would flag ordinary seeds. Without a pool (one row,
  or no other row with two seeds) the absolute rule stands: std above ``max_seed_std`` (default 3.0 points; with three
  seeds of true std 2 the sample std exceeds 3 about one time in ten, exp(-2.25)). Independently, a run that lies more
  than ``collapse_gap`` points (default 10) below the median of the row's other runs is a collapsed seed, named even
  with many seeds, where it moves the std little.
"""
import math
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from scipy import stats

from analysis.runs.metrics import as_finite

from .units import run_design_effect

NOT_CONVERGED, SEEDS_DISAGREE = "not converged", "seeds disagree"
CONVERGE_Z = 2.0  # the rise must exceed this many SEs of the validation noise
DISAGREE_P = 0.001
NAN = float("nan")


@dataclass(frozen=True)
class Checks:
    """The thresholds of both checks, in top-1 points (collate's --converge-epochs, --converge-tol,
    --max-seed-std, --collapse-gap)."""
    converge_epochs: int = 3
    converge_tol: float = 3.0
    max_seed_std: float = 3.0
    collapse_gap: float = 10.0

    def __post_init__(self):
        if self.converge_epochs < 2:
            raise ValueError(f"converge_epochs {self.converge_epochs}: fewer than 2 epochs have no trend; "
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
    last_epochs_rise: float  # signed, the largest |rise| among the runs judged (NaN: none judged)
    last_epochs_rise_se: float = NAN  # that run's validation-noise SE of its rise (NaN: unknown or none judged)
    spread_p: float = NAN  # the seeds-disagree F-test's p (NaN: not testable)


@dataclass(frozen=True)
class Trend:
    """A run's last epochs: the change their least-squares trend implies over the window (points) and its
    standard error from the binomial noise of one evaluation (NaN: validation size unknown)."""
    rise: float
    noise_se: float

    def moving(self, checks: Checks) -> bool:
        beyond_noise = math.isnan(self.noise_se) or abs(self.rise) > CONVERGE_Z * self.noise_se
        return abs(self.rise) > checks.converge_tol and beyond_noise


def binomial_sd(top1: float, num_val: Any, deff: float = 1.0) -> float:
    """The sd of one evaluation's top-1 (points) on ``num_val`` images around ``top1``, its binomial variance
    times the design effect ``deff`` of images that share a source (1: independent images); NaN when unknown."""
    num_val = pd.to_numeric(num_val, errors="coerce")
    if pd.isna(num_val) or num_val <= 0 or math.isnan(top1):
        return NAN
    p = min(max(top1 / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(deff * p * (1.0 - p) / float(num_val))


def design_effects(runs: pd.DataFrame) -> List[float]:
    """Each run's design effect (``units.run_design_effect`` of its run dir's final predictions), 1 where its
    images are independent or it is unknown (no predictions, a W&B run, top-1 0 or 100)."""
    effects = [run_design_effect(run_dir) for run_dir in column(runs, "run_dir")]
    return [effect.deff if effect is not None and math.isfinite(effect.deff) else 1.0 for effect in effects]


def val_top1_curve(history: Any) -> List[float]:
    """A run's validation top-1 per epoch in epoch order (the last record of an epoch counts); epochs
    without a value are left out."""
    by_epoch = {}
    for index, record in enumerate(history if isinstance(history, list) else []):
        top1 = as_finite(record.get("top1"))
        if top1 is not None:
            epoch = record.get("epoch")
            by_epoch[index if epoch is None else epoch] = top1
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def last_epochs_trend(history: Any, epochs: int, num_val: Any = None, deff: float = 1.0) -> Optional[Trend]:
    """The trend of the last ``epochs`` validation top-1 values (``deff``: the run's design effect, applied to
    every epoch); None with fewer."""
    curve = val_top1_curve(history)
    if len(curve) < epochs:
        return None
    window = np.asarray(curve[-epochs:])
    x = np.arange(epochs, dtype=float)
    slope = np.polyfit(x, window, 1)[0]
    spread = math.sqrt(float(np.sum((x - x.mean()) ** 2)))
    noise_se = (epochs - 1) * binomial_sd(float(window.mean()), num_val, deff) / spread
    return Trend(rise=float(slope * (epochs - 1)), noise_se=noise_se)


def column(runs: pd.DataFrame, name: str) -> pd.Series:
    return runs[name] if name in runs else pd.Series([None] * len(runs), index=runs.index, dtype=object)


def convergence(runs: pd.DataFrame, checks: Checks) -> Tuple[Optional[bool], Optional[Trend], Optional[Trend]]:
    """(converged: True / False / None for not judged, the trend with the largest |rise| among the runs judged
    (None: none judged), the trend of the moving run that rises most: None when none moves)."""
    trends = [last_epochs_trend(history, checks.converge_epochs, num_val, deff)
              for history, num_val, deff in zip(column(runs, "history"), column(runs, "num_val"), design_effects(runs))]
    judged = [trend for trend in trends if trend is not None]
    largest = max(judged, key=lambda trend: abs(trend.rise), default=None)
    moving = [trend for trend in judged if trend.moving(checks)]
    if moving:
        return False, largest, max(moving, key=lambda trend: abs(trend.rise))
    return (True if len(judged) == len(trends) else None), largest, None


def finite_top1(runs: pd.DataFrame) -> pd.Series:
    """The runs' final top-1, NaN where not a finite number: an inf would otherwise read as a spread."""
    top1 = pd.to_numeric(runs["top1"], errors="coerce")
    return top1.where(np.isfinite(top1.astype(float)))


def top1_values(runs: pd.DataFrame) -> np.ndarray:
    return finite_top1(runs).dropna().to_numpy(float)


def collapsed_seeds(runs: pd.DataFrame, checks: Checks) -> List[str]:
    """"seed 2 at 25.00, others' median 85.50" per run far below the row's other runs."""
    top1 = finite_top1(runs).to_numpy(float)
    found = []
    for index, (seed, value) in enumerate(zip(runs["seed"], top1)):
        others = pd.Series(top1).drop(index).median()
        if others - value > checks.collapse_gap:
            found.append(f"seed {seed} at {value:.2f}, others' median {others:.2f}")
    return found


def pooled_seed_variance(others: Sequence[pd.DataFrame]) -> Tuple[float, int]:
    """(sum (n_j - 1) s_j^2 / sum (n_j - 1), sum (n_j - 1)) over the rows with two or more seeds; (NaN, 0)
    without any."""
    spread = [(len(values) - 1, np.var(values, ddof=1)) for values in map(top1_values, others) if len(values) >= 2]
    df = sum(dof for dof, _ in spread)
    return (sum(dof * variance for dof, variance in spread) / df, df) if df else (NAN, 0)


def p_text(p: float) -> str:
    return "p < 0.0001" if p < 0.0001 else f"p {p:.4f}"


@dataclass(frozen=True)
class SpreadTest:
    """A row's spread over seeds against what seed and validation noise predict (points), and its F-test."""
    std: float
    expected_sd: float
    p: float
    floored: bool  # the expected variance is the binomial floor, not the other rows' pool
    num_val: int
    deff: float = 1.0  # the runs' mean design effect in the floor (1: independent images)


def spread_f_test(runs: pd.DataFrame, others: Sequence[pd.DataFrame]) -> Optional[SpreadTest]:
    """The F-test of the row's variance over seeds against the other rows' pooled one (floored at the binomial
    variance of one evaluation); None with fewer than two seeds or no other row's seeds to pool."""
    measured = pd.DataFrame({"top1": finite_top1(runs),
                             "num_val": pd.to_numeric(column(runs, "num_val"), errors="coerce"),
                             "deff": design_effects(runs)}).dropna(subset="top1")
    pooled, df2 = pooled_seed_variance(others)
    if len(measured) < 2 or not pooled > 0:
        return None
    variance, df1 = float(measured["top1"].var(ddof=1)), len(measured) - 1
    binomial = pd.Series([binomial_sd(top1, size, deff) ** 2
                          for top1, size, deff in measured.itertuples(index=False)]).mean()
    floored = binomial > pooled
    expected = binomial if floored else pooled
    return SpreadTest(std=math.sqrt(variance), expected_sd=math.sqrt(expected),
                      p=float(stats.f.sf(variance / expected, df1, df2)), floored=bool(floored),
                      num_val=int(measured["num_val"].median()) if measured["num_val"].notna().any() else 0,
                      deff=float(measured["deff"].mean()))


def spread_test(runs: pd.DataFrame, test: Optional[SpreadTest], checks: Checks) -> str:
    """"std 4.10 vs 1.05 expected from the other rows, F-test p 0.0002", or "" when the spread over seeds is
    what seed and validation noise predict (or cannot be judged: fewer than two seeds). ``test``: the row's
    ``spread_f_test``."""
    if len(top1_values(runs)) < 2:
        return ""
    if test is None:  # no other row's seeds to say what seed noise is: the absolute rule
        std = float(np.std(top1_values(runs), ddof=1))
        return (f"std {std:.2f} > {checks.max_seed_std:g}, with no other row's seeds to judge it by"
                if std > checks.max_seed_std else "")
    if test.p >= DISAGREE_P:
        return ""
    clustered = f" times their design effect {test.deff:.1f}" if test.deff != 1.0 else ""
    source = "the other rows" + (f", floored at the binomial noise of {test.num_val} validation images{clustered}"
                                 if test.floored else "")
    return f"std {test.std:.2f} vs {test.expected_sd:.2f} expected from {source}, F-test {p_text(test.p)}"


def check_row(runs: pd.DataFrame, checks: Checks, others: Sequence[pd.DataFrame] = ()) -> RowCheck:
    """``others``: the table's other rows, whose spread over seeds is what this row's is judged against."""
    converged, largest, moving = convergence(runs, checks)
    problems = []
    if moving is not None:
        direction = "rise" if moving.rise > 0 else "fall"
        noise = ("validation size unknown" if math.isnan(moving.noise_se) else f"noise SE {moving.noise_se:.2f}")
        problems.append(f"{NOT_CONVERGED} (last {checks.converge_epochs} epochs {direction} {abs(moving.rise):.2f} "
                        f"points by their trend, {noise})")
    spread = spread_f_test(runs, others)
    disagreement = [text for text in [spread_test(runs, spread, checks), *collapsed_seeds(runs, checks)] if text]
    if disagreement:
        problems.append(f"{SEEDS_DISAGREE} ({'; '.join(disagreement)})")
    return RowCheck(flag="; ".join(problems), converged=converged,
                    last_epochs_rise=largest.rise if largest else NAN,
                    last_epochs_rise_se=largest.noise_se if largest else NAN,
                    spread_p=spread.p if spread else NAN)


def check_rows(groups: Sequence[pd.DataFrame], checks: Checks) -> pd.DataFrame:
    """Columns ``flag``, ``converged``, ``last_epochs_rise``, ``last_epochs_rise_se``, ``spread_p``, one row per
    group (the table's order)."""
    # a collapsed seed would inflate the pool and hide a real disagreement elsewhere
    poolable = [not collapsed_seeds(group, checks) for group in groups]
    checked = [check_row(group, checks, [other for j, other in enumerate(groups) if j != i and poolable[j]])
               for i, group in enumerate(groups)]
    return pd.DataFrame({"flag": [row.flag for row in checked],
                         "converged": pd.Series([row.converged for row in checked], dtype=object),
                         "last_epochs_rise": [row.last_epochs_rise for row in checked],
                         "last_epochs_rise_se": [row.last_epochs_rise_se for row in checked],
                         "spread_p": [row.spread_p for row in checked]})


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
        lines.append(f"Not converged ({rows(not_converged)}): the least-squares trend of a run's validation top-1 "
                     f"over its last {checks.converge_epochs} epochs moves it by more than "
                     f"{points(checks.converge_tol)} and by more than {CONVERGE_Z:g} standard errors of the "
                     f"validation set's binomial noise (where its size is recorded), so its final number depends "
                     f"on when training stopped; not printed, not compared. Fix: train longer ({longer}) and look "
                     f"at the runs' val/top1 per epoch in metrics.csv (thresholds: collate --converge-epochs, "
                     f"--converge-tol).")
    disagree = table["flag"].str.contains(SEEDS_DISAGREE, regex=False)
    if disagree.any():
        lines.append(f"Seeds disagree ({rows(disagree)}): the spread over seeds is larger than the other rows' "
                     f"pooled seed spread predicts, floored at the validation set's binomial noise (F-test, "
                     f"p < {DISAGREE_P:g}; with no other row, std above {points(checks.max_seed_std)}), or a "
                     f"seed lies more than {points(checks.collapse_gap)} below the others' median; not printed, "
                     f"not compared. Fix: look at each seed's val/top1 per epoch in metrics.csv for a collapsed "
                     f"or diverged run, then rerun it or add seeds (thresholds: collate --max-seed-std, "
                     f"--collapse-gap).")
    not_judged = table["converged"].isna()
    if not_judged.any():
        lines.append(f"Convergence not judged ({rows(not_judged)}): runs with fewer than "
                     f"{checks.converge_epochs} epochs of validation history; their numbers are printed unchecked.")
    return lines
