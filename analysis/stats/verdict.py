"""Four verdicts for each row against the reference: better, worse, equivalent within a declared margin, or
inconclusive. "No effect" is only ever said of an equivalent row: a difference the test cannot resolve is
inconclusive, whatever its p-value.

- better / worse: the two-sided test of "no difference" (the row's test: paired t over seeds, Welch, or over
  images) rejects, Holm over the rows, at the design's nominal level (``sequential``); the sign says which.
- equivalent: a margin m is declared (``margin`` per ablation in experiments/ablations.yaml, ``--margin``) and the
  two one-sided tests (TOST, Schuirmann 1987; ``statsmodels ttost_paired`` / ``ttost_ind``) reject both
  "difference <= -m" and "difference >= m", Holm over the rows, at the design's one-sided nominal level: the
  (1 - 2 alpha) interval lies inside [-m, m]. Equivalent wins over better / worse: a difference shown to be inside
  the margin is one the margin declared too small to matter.
- inconclusive: neither.

Seeds enter in ascending order, and a design (``sequential.Design``) says where the looks were: the tests are
re-run on the first n_k shared seeds of each look, and a row is resolved at the first look it crosses. Without a
design there is one look at the seeds run (then the levels are Holm's at alpha exactly). A row compared over
images or unpaired has one look, its last.
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.weightstats import ttost_ind, ttost_paired

from .compare import PAIRED_T, WELCH, Comparison, quietly
from .sequential import ALPHA, Design, graphical_holm, nominal_levels

BETTER, WORSE, EQUIVALENT, INCONCLUSIVE = "better", "worse", "equivalent", "inconclusive"
REFERENCE, NOT_COMPARED = "reference", "not compared"
RESOLVED = (BETTER, WORSE, EQUIVALENT)
NAN = float("nan")


@dataclass
class RowVerdict:
    verdict: str
    p_equiv: float = NAN  # TOST p at the last look (NaN: no margin, or no test)
    resolved_at: float = NAN  # seeds at the look that resolved it (NaN: unresolved, or not a test over seeds)


def paired_p(reference: np.ndarray, row: np.ndarray) -> float:
    if len(row) < 2:
        return NAN
    if np.all(row == reference):
        return 1.0
    return float(quietly(stats.ttest_rel, row, reference).pvalue)


def paired_tost_p(reference: np.ndarray, row: np.ndarray, margin: float) -> float:
    if len(row) < 2:
        return NAN
    if np.ptp(row - reference) == 0:  # no spread to size the interval by (identical top-1s, say): no test
        return NAN
    return float(quietly(ttost_paired, row, reference, -margin, margin)[0])


def tost_from_interval(comparison: Comparison, margin: float) -> float:
    """Over images: the TOST p from the normal approximation the 95% interval implies (its half-width / 1.96)."""
    se = (comparison.ci_high - comparison.ci_low) / (2 * stats.norm.isf(0.025))
    if not (math.isfinite(se) and se > 0):
        return NAN
    return float(max(stats.norm.sf((comparison.diff + margin) / se), stats.norm.sf((margin - comparison.diff) / se)))


@dataclass
class RowTests:
    """One row's p-values at each look (two-sided difference; TOST) and its difference at each look."""
    p_diff: List[float]
    p_equiv: List[float]
    diff: List[float]
    seeds: List[float]  # seeds behind each look (NaN: one look over images)


def row_tests(reference: pd.Series, row: pd.Series, comparison: Comparison, looks: List[int],
              margin: Optional[float]) -> RowTests:
    """``reference`` / ``row``: top-1 by seed. Paired rows are re-tested on their first shared seeds at each look;
    other rows have their one test at the last look (NaN before it)."""
    if comparison.test == PAIRED_T:
        shared = sorted(set(reference.index) & set(row.index))
        ref, other = reference.loc[shared].to_numpy(float), row.loc[shared].to_numpy(float)
        counts = [min(look, len(shared)) for look in looks]
        return RowTests(p_diff=[paired_p(ref[:n], other[:n]) for n in counts],
                        p_equiv=[paired_tost_p(ref[:n], other[:n], margin) if margin else NAN for n in counts],
                        diff=[float(np.mean(other[:n] - ref[:n])) for n in counts], seeds=[float(n) for n in counts])
    before = [NAN] * (len(looks) - 1)
    if comparison.test == WELCH and margin:
        p_equiv = float(quietly(ttost_ind, row.to_numpy(float), reference.to_numpy(float), -margin, margin,
                                usevar="unequal")[0])
    else:
        p_equiv = tost_from_interval(comparison, margin) if margin else NAN
    return RowTests(p_diff=before + [comparison.p_value], p_equiv=before + [p_equiv], diff=before + [comparison.diff],
                    seeds=before + [NAN])


def verdicts(tests: Dict[str, RowTests], looks: List[int], design: Design) -> Dict[str, RowVerdict]:
    """Each compared row's verdict, Holm over the rows (Maurer & Bretz's graphical form across the looks)."""
    def two_sided(level: float) -> np.ndarray:
        return 2 * nominal_levels(looks, design.max_seeds, level / 2, design.spending)

    def one_sided(level: float) -> np.ndarray:
        return nominal_levels(looks, design.max_seeds, level, design.spending)

    different = graphical_holm({row: t.p_diff for row, t in tests.items()}, two_sided, design.alpha)
    equivalent = graphical_holm({row: t.p_equiv for row, t in tests.items()}, one_sided, design.alpha)
    result = {}
    for row, t in tests.items():
        if row in equivalent:
            look = equivalent[row]
            result[row] = RowVerdict(EQUIVALENT, t.p_equiv[-1], t.seeds[look])
        elif row in different:
            look = different[row]
            result[row] = RowVerdict(BETTER if t.diff[look] > 0 else WORSE, t.p_equiv[-1], t.seeds[look])
        else:
            result[row] = RowVerdict(INCONCLUSIVE, t.p_equiv[-1])
    return result


def fixed_design(seeds: int, alpha: float = ALPHA) -> Design:
    """One look at the seeds run (the whole budget, so its level is alpha): Holm at alpha."""
    seeds = max(seeds, 2)
    return Design(max_seeds=seeds, looks=(seeds,), alpha=alpha)
