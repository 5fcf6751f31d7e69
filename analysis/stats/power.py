"""How many seeds would resolve the smallest gap in the table: the number of seed pairs a two-sided paired
t-test needs to detect that gap at 80% power and alpha 0.05 (``statsmodels TTestPower``), with the effect
size gap / sd of the seed-paired differences observed. For rows compared without pairing (Welch), the sd of
a difference of two independent seeds, sqrt(var_row + var_ref), stands in: what pairing would give at worst.
With one seed per row there is no spread to plan from, and the line says so. A gap under MIN_GAP (what prints as
0.00: two rows' means over the same images differ by float rounding only) is no gap; past MAX_SEEDS the line
says "more than" instead of a number no one would run.

Under it, the minimum detectable difference of each compared row: the smallest |difference| its own test
detects at 80% power and alpha 0.05 two-sided (before Holm) with the seeds it had and the spread they showed.
Paired t: ``TTestPower().solve_power(nobs=pairs)`` gives it in units of the sd of the seed-paired differences;
Welch: ``TTestIndPower().solve_power(nobs1=n_ref, ratio=n_row / n_ref)`` in units of the pooled sd over seeds
(statsmodels' effect size for two samples: the difference over their common sd), a pooled t standing in for
Welch's. A row compared over images (McNemar), the reference and flagged rows have none (``mdd`` NaN)."""
import math
import warnings
from typing import List, Optional, Sequence, Tuple

from statsmodels.stats.power import TTestIndPower, TTestPower

from .compare import ALPHA, PAIRED_T, WELCH, Comparison

POWER = 0.8
METHOD = "method: paired t-test power, statsmodels TTestPower"
TARGET = f"at {POWER:.0%} power and alpha {ALPHA}"
MIN_GAP = 0.005  # top-1 points
MAX_SEEDS = 1000
NAN = float("nan")


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


def standardized_mdd(comparison: Comparison) -> float:
    """The detectable effect size of the comparison's test at its seeds (NaN: not a test over seeds)."""
    with warnings.catch_warnings():  # statsmodels warns when its root finder needs a second try
        warnings.simplefilter("ignore")
        if comparison.test == PAIRED_T and comparison.n_row >= 2:
            return float(TTestPower().solve_power(effect_size=None, nobs=comparison.n_row, alpha=ALPHA, power=POWER,
                                                  alternative="two-sided"))
        if comparison.test == WELCH and min(comparison.n_ref, comparison.n_row) >= 2:
            return float(TTestIndPower().solve_power(effect_size=None, nobs1=comparison.n_ref, alpha=ALPHA,
                                                     power=POWER, ratio=comparison.n_row / comparison.n_ref,
                                                     alternative="two-sided"))
    return NAN


def minimum_detectable_difference(comparison: Comparison) -> float:
    """In top-1 points; NaN for a test over images, the reference, a flagged row, or no spread over seeds."""
    sd = comparison.sd_of_differences if comparison.test == PAIRED_T else comparison.pooled_sd
    if not (math.isfinite(sd) and sd > 0):
        return NAN
    return standardized_mdd(comparison) * sd


def tests_run(comparisons: Sequence[Comparison]) -> str:
    """"paired t over 5 seeds", "paired t over 3 or 5 seeds, unpaired t over 3 and 4 seeds"."""
    paired = sorted({c.n_row for c in comparisons if c.test == PAIRED_T})
    unpaired = dict.fromkeys((c.n_ref, c.n_row) for c in comparisons if c.test == WELCH)
    parts: List[str] = []
    if paired:
        parts.append(f"paired t over {' or '.join(map(str, paired))} seeds")
    parts += [f"unpaired t over {n_ref} and {n_row} seeds (pooled sd, TTestIndPower)" for n_ref, n_row in unpaired]
    return ", ".join(parts)


def power_line(comparisons: Sequence[Tuple[str, Comparison]]) -> str:
    """One sentence for under the table, after the seeds-needed line."""
    seed_based = [(label, c) for label, c in comparisons if c.test in (PAIRED_T, WELCH)]
    if not seed_based:
        return ("Minimum detectable difference: not computable: no row has two or more seeds on both sides of a "
                "comparison, so there is no seed-to-seed spread to size it from (run seed=0,1,2 to measure it).")
    sizes = [(label, minimum_detectable_difference(c)) for label, c in seed_based]
    detectable = [size for _, size in sizes if math.isfinite(size)]
    if not detectable:
        return ("Minimum detectable difference: not computable: the differences to the reference show no spread "
                "over the seeds run (the same on every seed); add seeds to measure it.")
    listed = ", ".join(f"{label} {size:.2f}" if math.isfinite(size) else f"{label} n/a (no spread)"
                       for label, size in sizes)
    return (f"Minimum detectable difference at the seeds run ({POWER:.0%} power, alpha {ALPHA} two-sided before "
            f"Holm; {tests_run([c for _, c in seed_based])}): {listed} points; largest {max(detectable):.2f}.")
