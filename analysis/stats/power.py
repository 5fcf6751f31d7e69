"""How many seeds would resolve the smallest gap in the table: the number of seed pairs a two-sided paired
t-test needs to detect that gap at 80% power and alpha 0.05 (``statsmodels TTestPower``), with the effect
size gap / sd of the seed-paired differences observed. For rows compared without pairing (Welch), the sd of
a difference of two independent seeds, sqrt(var_row + var_ref), stands in: what pairing would give at worst.
With one seed per row there is no spread to plan from, and the line says so. A gap under MIN_GAP (what prints as
0.00: two rows' means over the same images differ by float rounding only) is no gap; past MAX_SEEDS the line
says "more than" instead of a number no one would run."""
import math
import warnings
from typing import Optional, Sequence, Tuple

from statsmodels.stats.power import TTestPower

from .compare import ALPHA, PAIRED_T, WELCH, Comparison

POWER = 0.8
METHOD = "method: paired t-test power, statsmodels TTestPower"
TARGET = f"at {POWER:.0%} power and alpha {ALPHA}"
MIN_GAP = 0.005  # top-1 points
MAX_SEEDS = 1000


def seeds_for(gap: float, sd_of_differences: float) -> int:
    """Seeds per row (pairs) a paired t-test needs to detect ``gap`` given that spread; at least 2."""
    with warnings.catch_warnings():  # a huge effect: the solver finds no root and returns NaN
        warnings.simplefilter("ignore")
        nobs = TTestPower().solve_power(effect_size=abs(gap) / sd_of_differences, nobs=None, alpha=ALPHA,
                                        power=POWER, alternative="two-sided")
    nobs = float(nobs)
    return max(2, math.ceil(nobs)) if math.isfinite(nobs) else 2


def smallest_gap(comparisons: Sequence[Tuple[str, Comparison]]) -> Optional[Tuple[str, Comparison]]:
    seed_based = [(label, c) for label, c in comparisons if c.test in (PAIRED_T, WELCH) and
                  math.isfinite(c.diff) and abs(c.diff) >= MIN_GAP]
    return min(seed_based, key=lambda item: abs(item[1].diff)) if seed_based else None


def seeds_needed_line(comparisons: Sequence[Tuple[str, Comparison]], reference: str) -> str:
    """One sentence for under the table."""
    found = smallest_gap(comparisons)
    if found is None:
        if any(c.test in (PAIRED_T, WELCH) for _, c in comparisons):
            return (f"Seeds needed: no gap to the reference to resolve (every difference is under {MIN_GAP} "
                    f"points).")
        return ("Seeds needed: not computable: no row has two or more seeds on both sides of a comparison, so "
                "there is no seed-to-seed spread to plan from (run seed=0,1,2 to measure it).")
    label, comparison = found
    gap, sd = abs(comparison.diff), comparison.sd_of_differences
    spread = "seed-paired differences" if comparison.test == PAIRED_T else "difference of two unpaired seeds"
    if not math.isfinite(sd) or sd == 0:
        return (f"Seeds needed: the smallest gap ({label} vs {reference}, {gap:.2f} points) has no spread over "
                f"the seeds run, so no power estimate is possible ({METHOD}); add seeds to measure the spread.")
    seeds = seeds_for(gap, sd)
    count = f"more than {MAX_SEEDS:,}" if seeds > MAX_SEEDS else f"about {seeds}"
    return (f"Seeds needed: {count} seeds per row would resolve the smallest gap ({label} vs "
            f"{reference}, {gap:.2f} points; sd of the {spread} {sd:.2f}) {TARGET} ({METHOD}).")
