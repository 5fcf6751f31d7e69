"""Group runs by the factors that vary, aggregate over seeds, and say which differences are noise.

Noise test: Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``) of each group's top-1 over seeds
against the best group's, two-sided, at alpha = 0.05. "within noise" means p >= 0.05: the data cannot tell
the two apart. With fewer than two seeds on either side there is no spread to test against, so the flag
is "n/a (n=1)": run more seeds (``seed=0,1,2``) before reading anything into a sub-point gap. Two groups
with zero spread each are "within noise" only when their means are equal.
"""
import warnings
from typing import List, Sequence

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
MEANS = ["top5", "best_top1", "params_m", "gmacs", "fusion_params_m", "fusion_gmacs", "wall_time_s",
         "images_per_s", "epochs"]


def varying_factors(runs: pd.DataFrame, candidates: Sequence[str]) -> List[str]:
    """The candidate columns whose values differ between runs (seed is never one), dropping any that
    splits the runs no further than the factors kept before it (``model.patch_size`` after ``patch_size``,
    ``K`` after ``depth``). With nothing varying, the runs are grouped by fusion (one row)."""
    factors: List[str] = []
    groups = 1
    for column in candidates:
        if column == "seed" or column not in runs or runs[column].astype(str).nunique() < 2:
            continue
        split = runs[factors + [column]].astype(str).drop_duplicates().shape[0]
        if split > groups:
            factors.append(column)
            groups = split
    if not factors and "fusion" in runs:
        factors = ["fusion"]
    return factors


def welch(best: np.ndarray, other: np.ndarray):
    """(p-value, flag) of other vs best."""
    if len(best) < 2 or len(other) < 2:
        return np.nan, f"n/a (n={min(len(best), len(other))})"
    if np.var(best) == 0 and np.var(other) == 0:
        same = np.isclose(best.mean(), other.mean())
        return (1.0 if same else 0.0), ("yes" if same else "no")
    with warnings.catch_warnings():  # near-identical seeds: scipy warns about precision, the p-value stands
        warnings.simplefilter("ignore", RuntimeWarning)
        p_value = stats.ttest_ind(best, other, equal_var=False).pvalue
    return float(p_value), ("yes" if p_value >= ALPHA else "no")


def aggregate(runs: pd.DataFrame, factors: Sequence[str]) -> pd.DataFrame:
    """One row per combination of ``factors``: top-1 mean, std (ddof=1; NaN for one seed) and n over
    seeds, means of the other metrics and costs, and the noise test against the best group."""
    factors = list(factors)
    keyed = runs.assign(**{factor: runs[factor].astype(str) for factor in factors})
    means = [column for column in MEANS if column in keyed]
    keyed[["top1"] + means] = keyed[["top1"] + means].apply(pd.to_numeric, errors="coerce")
    grouped = keyed.groupby(factors, sort=True, dropna=False)
    table = grouped["top1"].agg(top1_mean="mean", top1_std="std", n="count")
    table = table.join(grouped[means].mean()).reset_index()
    table["seeds"] = [sorted(group["seed"].tolist()) for _, group in grouped]
    best_index = table["top1_mean"].idxmax()
    best_scores = scores(grouped, table.loc[best_index, factors])
    table["is_best"] = table.index == best_index
    p_values, flags = [], []
    for index, row in table.iterrows():
        if index == best_index:
            p_values.append(np.nan)
            flags.append("best")
            continue
        p_value, flag = welch(best_scores, scores(grouped, row[factors]))
        p_values.append(p_value)
        flags.append(flag)
    table["p_vs_best"] = p_values
    table["within_noise"] = flags
    return table


def scores(grouped, key) -> np.ndarray:
    key = tuple(key) if len(key) > 1 else key.iloc[0]
    return grouped.get_group(key if isinstance(key, tuple) else (key,))["top1"].to_numpy(dtype=float)
