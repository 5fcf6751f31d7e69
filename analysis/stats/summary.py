"""Group runs by the factors that vary and summarise each group over its seeds: top-1 mean, std (ddof 1,
the paper's convention), n, the seeds, the means of the other metrics and costs, and per-branch top-1 means
when the runs recorded them. Comparisons between groups live in ``ablation`` (tests in ``compare``)."""
import re
from typing import List, Sequence

import pandas as pd

MEANS = ["top5", "best_top1", "params_m", "gmacs", "fusion_params_m", "fusion_gmacs", "wall_time_s",
         "images_per_s", "epochs"]
BRANCH_COLUMN = re.compile(r"^top1_branch(\d+)$")


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


def branch_columns(frame: pd.DataFrame) -> List[str]:
    """``top1_branch0``, ``top1_branch1``, ... in branch order (S first), those with any value."""
    found = [column for column in frame.columns if BRANCH_COLUMN.match(column) and frame[column].notna().any()]
    return sorted(found, key=lambda column: int(BRANCH_COLUMN.match(column).group(1)))


def keyed_by_factors(runs: pd.DataFrame, factors: Sequence[str]) -> pd.DataFrame:
    """Factor values as strings (lists and None group reliably), metrics as numbers."""
    keyed = runs.assign(**{factor: runs[factor].astype(str) for factor in factors})
    numeric = ["top1"] + [column for column in MEANS + branch_columns(runs) if column in keyed]
    keyed[numeric] = keyed[numeric].apply(pd.to_numeric, errors="coerce")
    return keyed


def summarize_groups(runs: pd.DataFrame, factors: Sequence[str]) -> pd.DataFrame:
    """One row per combination of ``factors`` (sorted): top1_mean, top1_std (NaN for one seed), n, seeds,
    the means of MEANS and ``top1_branch<i>_mean``."""
    factors = list(factors)
    keyed = keyed_by_factors(runs, factors)
    means = [column for column in MEANS if column in keyed]
    branches = branch_columns(keyed)
    grouped = keyed.groupby(factors, sort=True, dropna=False)
    table = grouped["top1"].agg(top1_mean="mean", top1_std="std", n="count")
    table = table.join(grouped[means].mean())
    if branches:
        table = table.join(grouped[branches].mean().rename(columns=lambda column: f"{column}_mean"))
    table = table.reset_index()
    table["seeds"] = [sorted(group["seed"].tolist()) for _, group in grouped]
    return table
