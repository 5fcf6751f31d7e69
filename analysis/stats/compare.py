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
- Over sources (``over_sources``): where validation images share a source (``Predictions.clustered``: the 28
  renders of each of the proxy's 360 held-out digits), they succeed or fail together and the tests above,
  counting images as independent, understate the noise by the design effect (``units``). The source is the unit
  instead: Obuchowski's clustered McNemar test (N. A. Obuchowski, "On the comparison of correlated proportions
  for clustered data", Statistics in Medicine 17, 1998: z = d / SE with SE^2 = k / (k - 1) sum_i (D_i - m_i
  d)^2 / n^2 over the k sources, D_i the per-source sum of row - reference correctness, m_i its images; z^2 is
  her chi-square on 1 df) and a cluster bootstrap interval (sources resampled, not images:
  ``scipy.stats.bootstrap`` over the per-source sums, percentile, the same fixed seed).
Differences are ``row - reference`` in top-1 points; all tests two-sided.
"""
import math
import warnings
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from analysis.runs.predictions import Predictions

from .units import ratio_variance, source_totals

ALPHA = 0.05  # two-sided; p_holm below it is significant (the table's *)
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0
PAIRED_T, WELCH, MCNEMAR = "paired t", "Welch (unpaired)", "McNemar exact"
CLUSTERED = "clustered McNemar (Obuchowski)"
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


def shared_source(reference: Predictions, other: Predictions) -> Optional[np.ndarray]:
    """The images' sources where some share one (either side's: paired runs have the same), else None."""
    return next((side.source for side in (reference, other) if side.clustered), None)


def over_images(reference: Predictions, other: Predictions) -> Comparison:
    """McNemar's exact p and a paired bootstrap interval of the top-1 difference, over the same images; over
    their sources instead where images share one (``over_sources``)."""
    source = shared_source(reference, other)
    if source is not None:
        return over_sources(reference, other, source)
    p_value = float(mcnemar(mcnemar_table(reference, other), exact=True).pvalue)
    row, ref = other.correct.astype(float), reference.correct.astype(float)
    result = quietly(stats.bootstrap, (row, ref), accuracy_difference, paired=True, vectorized=True,
                     n_resamples=BOOTSTRAP_RESAMPLES, batch=100, method="percentile",  # batch: ImageNet fits
                     confidence_level=CONFIDENCE, rng=np.random.default_rng(BOOTSTRAP_SEED))
    low, high = result.confidence_interval
    return Comparison(diff=float(accuracy_difference(row, ref)), ci_low=float(low), ci_high=float(high),
                      p_value=p_value, test=MCNEMAR, note=f"over {len(row)} validation images (one run per row)")


def percent_over_sources(totals, sizes, axis=-1):
    """100 sum(t_i) / sum(m_i) from per-source sums t_i and image counts m_i: top-1, or the top-1 difference
    where t_i sums row - reference correctness."""
    return 100.0 * np.sum(totals, axis=axis) / np.sum(sizes, axis=axis)


def over_sources(reference: Predictions, other: Predictions, source: np.ndarray) -> Comparison:
    """Obuchowski's clustered McNemar p and a cluster bootstrap interval of the top-1 difference, the sources
    of the images as the unit (module docstring)."""
    differences, sizes = source_totals(other.correct.astype(float) - reference.correct.astype(float), source)
    diff = float(percent_over_sources(differences, sizes))
    se = 100.0 * math.sqrt(ratio_variance(differences, sizes))
    if se > 0:
        p_value = float(2 * stats.norm.sf(abs(diff) / se))
    elif se == 0:  # every source moved by the same share: nothing (d = 0) or everything is a difference
        p_value = 1.0 if diff == 0 else 0.0
    else:  # one source: no spread between sources to test against
        p_value = NAN
    result = quietly(stats.bootstrap, (differences, sizes), percent_over_sources, paired=True, vectorized=True,
                     n_resamples=BOOTSTRAP_RESAMPLES, method="percentile", confidence_level=CONFIDENCE,
                     rng=np.random.default_rng(BOOTSTRAP_SEED))
    low, high = result.confidence_interval
    return Comparison(diff=diff, ci_low=float(low), ci_high=float(high), p_value=p_value, test=CLUSTERED,
                      note=f"over {len(sizes):,} sources ({len(source):,} validation images; one run per row)")


def mean_interval_over_seeds(values: Sequence[float]) -> Tuple[float, float]:
    """95% t-interval of the mean over seeds; NaN with fewer than two."""
    values = np.asarray(values, float)
    if len(values) < 2:
        return NAN, NAN
    if np.ptp(values) == 0:  # no spread: the interval is the value (scipy would return NaN)
        return float(values[0]), float(values[0])
    return interval(quietly(stats.ttest_1samp, values, 0.0))


def accuracy_interval(predictions: Predictions) -> Tuple[float, float]:
    """95% Clopper-Pearson (exact binomial) interval of one run's top-1, in percent; where images share a source,
    the cluster-robust one instead: the ratio estimator over sources +- z SE, SE^2 = k / (k - 1) sum_i (y_i -
    p m_i)^2 / n^2 (``units``), clipped to [0, 100]."""
    if predictions.clustered:
        right, sizes = source_totals(predictions.correct.astype(float), predictions.source)
        top1, se = float(percent_over_sources(right, sizes)), 100.0 * math.sqrt(ratio_variance(right, sizes))
        half = float(stats.norm.ppf(0.5 + CONFIDENCE / 2)) * se
        return max(0.0, top1 - half), min(100.0, top1 + half)
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
