"""One row's top-1 against the reference row's, and the 95% intervals, all from scipy / statsmodels.

- Over seeds, paired (``paired_t``): the rows share at least two seeds; Student's paired t-test on the seeds
  they share (``scipy.stats.ttest_rel``), the interval of the mean difference from the t distribution.
  Pairing removes what a seed does to both rows alike (init, data order), which is most of the noise.
- Over seeds, unpaired (``welch``): the rows share fewer than two seeds; Welch's t-test and interval
  (``ttest_ind(equal_var=False)``).
- Over images (``over_images``): a row with one run (the paper's ImageNet setting) has no spread over seeds;
  the two runs' per-image correctness is compared instead: McNemar's exact test
  (``statsmodels...mcnemar(exact=True)``, a binomial test on the images only one of them gets right) and a
  paired bootstrap over images of the accuracy difference (``scipy.stats.bootstrap(paired=True)``,
  percentile interval, fixed seed so that the table is reproducible). This measures how sure we are about
  these two trained models on this validation set, not across retrainings.
Differences are ``row - reference`` in top-1 points; all tests two-sided.
"""
import math
import warnings
from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from analysis.runs.predictions import Predictions

ALPHA = 0.05  # two-sided; p_holm below it is significant (the table's *)
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0
PAIRED_T, WELCH, MCNEMAR = "paired t", "Welch (unpaired)", "McNemar exact"
NAN = float("nan")


@dataclass
class Comparison:
    """A row against the reference: difference (points), its interval, p-value, the test, why it fell back."""
    diff: float = NAN
    ci_low: float = NAN
    ci_high: float = NAN
    p_value: float = NAN
    test: str = "n/a"
    note: str = ""
    sd_of_differences: float = NAN  # seed-to-seed spread of the difference: what the power estimate needs
    n_ref: int = 0  # seeds behind the test on each side (paired: the shared seeds); 0 over images
    n_row: int = 0
    pooled_sd: float = NAN  # unpaired: the pooled sd over seeds, the unit of TTestIndPower's effect size


def quietly(function, *args, **kwargs):
    """scipy warns on near-identical samples ("precision loss", "degenerate"); the result stands."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        return function(*args, **kwargs)


def interval(result) -> Tuple[float, float]:
    ci = result.confidence_interval(confidence_level=CONFIDENCE)
    return float(ci.low), float(ci.high)


def paired_t(reference: pd.Series, other: pd.Series) -> Comparison:
    """Seed by seed over the seeds both have (Series indexed by seed)."""
    seeds = sorted(set(reference.index) & set(other.index))
    ref, row = reference.loc[seeds].to_numpy(float), other.loc[seeds].to_numpy(float)
    result = quietly(stats.ttest_rel, row, ref)
    low, high = interval(result)
    note = "" if len(seeds) == len(reference) == len(other) else f"paired over the {len(seeds)} shared seeds"
    p_value = float(result.pvalue)
    if np.all(row == ref):  # t = 0/0: scipy gives NaN; no seed shows any difference, so nothing to reject
        p_value, note = 1.0, "identical top-1 on every shared seed"
    return Comparison(diff=float(np.mean(row - ref)), ci_low=low, ci_high=high, p_value=p_value,
                      test=PAIRED_T, note=note, sd_of_differences=float(np.std(row - ref, ddof=1)),
                      n_ref=len(seeds), n_row=len(seeds))


def welch(reference: Sequence[float], other: Sequence[float]) -> Comparison:
    ref, row = np.asarray(reference, float), np.asarray(other, float)
    result = quietly(stats.ttest_ind, row, ref, equal_var=False)
    low, high = interval(result)
    return Comparison(diff=float(row.mean() - ref.mean()), ci_low=low, ci_high=high, p_value=float(result.pvalue),
                      test=WELCH, note="unpaired: the rows share fewer than two seeds",
                      sd_of_differences=float(math.sqrt(np.var(row, ddof=1) + np.var(ref, ddof=1))),
                      n_ref=len(ref), n_row=len(row), pooled_sd=pooled_sd(ref, row))


def pooled_sd(first: np.ndarray, second: np.ndarray) -> float:
    """sqrt(((n1 - 1) s1^2 + (n2 - 1) s2^2) / (n1 + n2 - 2)): the common sd a two-sample t-test assumes."""
    dof = len(first) + len(second) - 2
    return float(math.sqrt(((len(first) - 1) * np.var(first, ddof=1) + (len(second) - 1) * np.var(second, ddof=1))
                           / dof))


def mcnemar_table(reference: Predictions, other: Predictions) -> np.ndarray:
    """2x2 counts: rows = reference right/wrong, columns = other right/wrong."""
    ref, row = reference.correct, other.correct
    return np.array([[np.sum(ref & row), np.sum(ref & ~row)], [np.sum(~ref & row), np.sum(~ref & ~row)]])


def accuracy_difference(row, ref, axis=-1):
    return 100.0 * (np.mean(row, axis=axis) - np.mean(ref, axis=axis))


def over_images(reference: Predictions, other: Predictions) -> Comparison:
    """McNemar's exact p and a paired bootstrap interval of the top-1 difference, over the same images."""
    p_value = float(mcnemar(mcnemar_table(reference, other), exact=True).pvalue)
    row, ref = other.correct.astype(float), reference.correct.astype(float)
    result = quietly(stats.bootstrap, (row, ref), accuracy_difference, paired=True, vectorized=True,
                     n_resamples=BOOTSTRAP_RESAMPLES, batch=100, method="percentile",  # batch: ImageNet fits
                     confidence_level=CONFIDENCE, rng=np.random.default_rng(BOOTSTRAP_SEED))
    low, high = result.confidence_interval
    return Comparison(diff=float(accuracy_difference(row, ref)), ci_low=float(low), ci_high=float(high),
                      p_value=p_value, test=MCNEMAR, note=f"over {len(row)} validation images (one run per row)")


def mean_interval_over_seeds(values: Sequence[float]) -> Tuple[float, float]:
    """95% t-interval of the mean over seeds; NaN with fewer than two."""
    values = np.asarray(values, float)
    if len(values) < 2:
        return NAN, NAN
    if np.ptp(values) == 0:  # no spread: the interval is the value (scipy would return NaN)
        return float(values[0]), float(values[0])
    return interval(quietly(stats.ttest_1samp, values, 0.0))


def accuracy_interval(predictions: Predictions) -> Tuple[float, float]:
    """95% Clopper-Pearson (exact binomial) interval of one run's top-1, in percent."""
    correct = int(predictions.correct.sum())
    ci = stats.binomtest(correct, len(predictions.target)).proportion_ci(confidence_level=CONFIDENCE,
                                                                        method="exact")
    return 100.0 * ci.low, 100.0 * ci.high


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values across the comparisons that have one (NaN stays NaN)."""
    p_values = np.asarray(p_values, float)
    adjusted = np.full_like(p_values, NAN)
    tested = ~np.isnan(p_values)
    if tested.any():
        adjusted[tested] = multipletests(p_values[tested], method="holm")[1]
    return adjusted
