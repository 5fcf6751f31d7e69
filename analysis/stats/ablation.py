"""The ablation table: each group's summary over seeds (``summary``), compared with a reference row
(``reference``) by the test its seeds allow (``compare``), Holm-adjusted across rows, with a legend line,
a seeds-needed line and a minimum-detectable-difference line (``power``) for under the table; each compared row's
minimum detectable difference is also the ``mdd`` column.

Per row, which test:
- the row and the reference share >= 2 seeds: paired t over those seeds;
- both have >= 2 seeds but share fewer than 2: Welch's unpaired t-test (the ``note`` column says so);
- either has one run: McNemar's exact test over validation images (``val_predictions.npz`` of the run with
  a shared seed, else the first run of each row); predictions missing, unreadable, or over different images
  leave the interval and p-value NaN, with the reason in ``note`` and a warning naming the run. Where images
  share a source (multiscale_digits' renders of one digit), Obuchowski's clustered McNemar test and a cluster
  bootstrap over the sources instead (``compare.over_sources``).
95% interval of a row's mean: t-interval over seeds (n >= 2), Clopper-Pearson over images (n = 1; cluster-robust
over the sources where images share one).

A row flagged by ``flags`` (not converged, seeds disagree) is compared with nothing and is never the reference
unless ``--ref`` names it; its own summary stays in the table (and ablation.csv), with the reason in ``flag``.
"""
import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import pandas as pd

from analysis.runs.predictions import Predictions, pairing_problem, read_predictions

from . import compare
from .compare import NAN, Comparison
from .flags import DEFAULT_CHECKS, Checks, check_rows, flag_notes
from .power import minimum_detectable_difference, power_line, seeds_needed_line
from .reference import choose_reference, reference_reason, row_labels
from .sequential import Design
from .summary import keyed_by_factors, summarize_groups
from .verdict import NOT_COMPARED as NO_VERDICT
from .verdict import REFERENCE, RowTests, fixed_design, row_tests, verdicts

log = logging.getLogger(__name__)
REFERENCE_TEST = "none (reference)"
NOT_COMPARED = "none (flagged)"
# ablation.csv leads with these (after the factors), under these names.
FIRST_COLUMNS = ["label", "flag", "top1_mean", "top1_std", "n", "top1_ci_low", "top1_ci_high", "diff_vs_ref",
                 "diff_ci_low", "diff_ci_high", "p_value", "p_holm", "mdd", "verdict", "margin", "p_equiv",
                 "resolved_at", "test", "note", "is_ref", "seeds", "converged", "last_epochs_rise",
                 "last_epochs_rise_se", "spread_p"]
TEST_LEGENDS = {
    compare.PAIRED_T: "paired t-test over the seeds shared with the reference (scipy ttest_rel)",
    compare.WELCH: "Welch's unpaired t-test, rows share < 2 seeds (scipy ttest_ind)",
    compare.MCNEMAR: "McNemar's exact test over validation images with a paired bootstrap CI (one run per row)",
    compare.CLUSTERED: "Obuchowski's clustered McNemar test over the validation images' sources with a cluster "
                       "bootstrap CI (one run per row; images of one source counted as one unit)",
    "n/a": "no test possible (see the note column of ablation.csv)",
}


@dataclass
class Ablation:
    """The table (one row per group; the columns of ablation.csv) and the lines printed under it."""
    table: pd.DataFrame
    factors: List[str]
    reference: str
    legend: str
    seeds_needed: str
    power_line: str  # the minimum detectable difference of each compared row
    flag_notes: List[str] = field(default_factory=list)  # one line per kind of flag in the table
    verdict_line: str = ""  # how the verdicts were reached: the margin, the design, the looks
    margin: Optional[float] = None
    one_machine: bool = True  # every run on one device with one thread count: their wall times compare

    @property
    def notes(self) -> List[str]:
        return [self.legend, *([self.verdict_line] if self.verdict_line else []), self.seeds_needed,
                self.power_line, *self.flag_notes]


class PredictionCache:
    """Reads each run's predictions once; warns once per run that cannot be used."""

    def __init__(self, warn: Callable[[str], None]):
        self.warn, self.read = warn, {}

    def __call__(self, run_dir: str) -> Union[Predictions, str]:
        if run_dir not in self.read:
            self.read[run_dir] = read_predictions(run_dir)
            if isinstance(self.read[run_dir], str):
                self.warn(f"run {run_dir}: {self.read[run_dir]}; it is compared by its seeds only")
        return self.read[run_dir]


def top1_by_seed(group: pd.DataFrame) -> pd.Series:
    return group.groupby("seed")["top1"].mean()


def representative_runs(reference: pd.DataFrame, row: pd.DataFrame):
    """The run of each side to compare over images: one with a seed both have, else the first."""
    shared = sorted(set(reference["seed"]) & set(row["seed"]))
    if shared:
        return (reference[reference["seed"] == shared[0]].iloc[0]["run_dir"],
                row[row["seed"] == shared[0]].iloc[0]["run_dir"])
    return reference.iloc[0]["run_dir"], row.iloc[0]["run_dir"]


def compare_over_images(reference: pd.DataFrame, row: pd.DataFrame, predictions: PredictionCache) -> Comparison:
    ref_dir, row_dir = representative_runs(reference, row)
    ref_pred, row_pred = predictions(ref_dir), predictions(row_dir)
    for run_dir, loaded in ((ref_dir, ref_pred), (row_dir, row_pred)):
        if isinstance(loaded, str):
            return Comparison(note=f"one run per row and no usable predictions: {run_dir}: {loaded}")
    problem = pairing_problem(ref_pred, row_pred)
    if problem:
        predictions.warn(f"runs {ref_dir} and {row_dir} cannot be compared over images: {problem}")
        return Comparison(note=f"not pairable over images: {problem}")
    return compare.over_images(ref_pred, row_pred)


def compare_rows(reference: pd.DataFrame, row: pd.DataFrame, predictions: PredictionCache) -> Comparison:
    ref_scores, row_scores = top1_by_seed(reference), top1_by_seed(row)
    if len(set(ref_scores.index) & set(row_scores.index)) >= 2:
        return compare.paired_t(ref_scores, row_scores)
    if len(ref_scores) >= 2 and len(row_scores) >= 2:
        return compare.welch(ref_scores.to_numpy(), row_scores.to_numpy())
    return compare_over_images(reference, row, predictions)


def mean_interval(group: pd.DataFrame, predictions: PredictionCache):
    if len(group) >= 2:
        return compare.mean_interval_over_seeds(group["top1"].to_numpy(float))
    loaded = predictions(group.iloc[0]["run_dir"])
    return compare.accuracy_interval(loaded) if isinstance(loaded, Predictions) else (math.nan, math.nan)


def legend_line(table: pd.DataFrame, reference: str, why: str) -> str:
    tests = [test for test in dict.fromkeys(table["test"]) if test not in (REFERENCE_TEST, NOT_COMPARED)]
    compared = int(table["p_value"].notna().sum())
    used = "; ".join(f"{TEST_LEGENDS[test]}" + (f" [{int((table['test'] == test).sum())} rows]"
                                                 if len(tests) > 1 else "") for test in tests)
    no_test = "none (one row)" if len(table) == 1 else "none (flagged rows are not compared)"
    shown = table[table["flag"] == ""]
    one_run = "Clopper-Pearson over images (cluster-robust where images share a source)"
    intervals = sorted({"t-interval over seeds" if n >= 2 else one_run for n in shown["n"]})
    return (f"Reference: {reference} ({why}). Δ = row - reference (top-1 points) [95% CI]; "
            f"test: {used or no_test}; p Holm-adjusted over {compared} comparison(s) as one look. "
            f"Mean ± std over seeds; 95% CI of the mean: "
            f"{', '.join(intervals) or 'none (every row is flagged)'}.")


def not_compared(row_flagged: bool) -> Comparison:
    whose = "this row" if row_flagged else "the reference row"
    return Comparison(test=NOT_COMPARED, note=f"not compared: {whose} is flagged (see flag)")


def analyse(runs: pd.DataFrame, factors: Sequence[str], ref: Optional[str] = None,
            warn: Callable[[str], None] = log.warning, checks: Checks = DEFAULT_CHECKS,
            ref_reason: Optional[str] = None, margin: Optional[float] = None,
            design: Optional[Design] = None) -> Ablation:
    """The full table; ``checks`` sets the thresholds of the flags; ``ref_reason`` says in the legend why
    ``ref`` is the reference (default: "chosen with --ref"); ``margin`` (top-1 points) lets a row be equivalent;
    ``design``: the sequential design its seeds were added under (default: one look at the seeds run). Raises
    reference.UnknownReferenceError when ``ref`` names no row."""
    factors = list(factors)
    table = summarize_groups(runs, factors)
    labels = row_labels(table, factors)
    keyed = keyed_by_factors(runs, factors)
    groups = [group for _, group in keyed.groupby(factors, sort=True, dropna=False)]
    table = table.join(check_rows(groups, checks))
    flagged = table["flag"] != ""
    ref_index = choose_reference(table, factors, ref, flagged)
    predictions = PredictionCache(warn)
    comparisons: Dict[int, Comparison] = {}
    for index in table.index:
        if index != ref_index and not flagged[index] and not flagged[ref_index]:
            comparisons[index] = compare_rows(groups[ref_index], groups[index], predictions)
    intervals = [mean_interval(group, predictions) for group in groups]
    reference_row = Comparison(diff=0.0, test=REFERENCE_TEST)
    rows = [comparisons.get(index, reference_row if index == ref_index else not_compared(flagged[index]))
            for index in table.index]
    table["label"] = labels
    table["top1_ci_low"], table["top1_ci_high"] = zip(*intervals)
    table["diff_vs_ref"] = [c.diff for c in rows]
    table["diff_ci_low"] = [c.ci_low for c in rows]
    table["diff_ci_high"] = [c.ci_high for c in rows]
    table["p_value"] = [c.p_value for c in rows]
    table["p_holm"] = compare.holm(table["p_value"])
    table["mdd"] = [minimum_detectable_difference(c) for c in rows]
    table["test"] = [c.test for c in rows]
    table["note"] = [c.note for c in rows]
    table["is_ref"] = table.index == ref_index
    verdict_line = add_verdicts(table, groups, comparisons, ref_index, margin, design)
    table = table[factors + [column for column in FIRST_COLUMNS if column not in factors] +
                  [column for column in table.columns if column not in FIRST_COLUMNS + factors]]
    reference = labels[ref_index]
    why = ref_reason if ref is not None and ref_reason else reference_reason(table, factors, ref, ref_index, flagged)
    legend = legend_line(table, reference, why)
    compared = [(labels[i], c) for i, c in comparisons.items()]
    seeds_line, detectable_line = seeds_needed_line(compared, reference), power_line(compared)
    if not comparisons and len(table) > 1:
        seeds_line = "Seeds needed: not computable: no comparison was made (flagged rows are not compared)."
        detectable_line = ("Minimum detectable difference: not computable: no comparison was made (flagged rows "
                           "are not compared).")
    return Ablation(table=table, factors=factors, reference=reference, legend=legend, seeds_needed=seeds_line,
                    power_line=detectable_line, flag_notes=flag_notes(table, checks), verdict_line=verdict_line,
                    margin=margin, one_machine=all(runs[column].nunique() <= 1 for column in ("device", "threads")
                                                   if column in runs))


def add_verdicts(table: pd.DataFrame, groups: List[pd.DataFrame], comparisons: Dict[int, Comparison],
                 ref_index: int, margin: Optional[float], design: Optional[Design]) -> str:
    """The ``verdict``, ``margin``, ``p_equiv`` and ``resolved_at`` columns (``verdict``); returns the line that
    says how they were reached."""
    tested = {index: c for index, c in comparisons.items() if np.isfinite(c.p_value)}
    reference = top1_by_seed(groups[ref_index])
    shared = max((len(set(reference.index) & set(top1_by_seed(groups[i]).index)) for i in tested), default=1)
    if design is None:
        design = fixed_design(shared)
        looks = [design.max_seeds]
    else:
        looks = design.looks_at(shared)
    tests: Dict[int, RowTests] = {index: row_tests(reference, top1_by_seed(groups[index]), c, looks, margin)
                                  for index, c in tested.items()}
    found = verdicts(tests, looks, design)
    table["verdict"] = [REFERENCE if index == ref_index else found[index].verdict if index in found else NO_VERDICT
                        for index in table.index]
    table["margin"] = float(margin) if margin else NAN
    table["p_equiv"] = [found[index].p_equiv if index in found else NAN for index in table.index]
    table["resolved_at"] = [found[index].resolved_at if index in found else NAN for index in table.index]
    return verdict_line(design, looks, margin, len(tested))


def verdict_line(design: Design, looks: List[int], margin: Optional[float], rows: int) -> str:
    equivalence = (f"equivalent: the two one-sided tests (TOST) put the difference inside ±{margin:g} points, the "
                   f"margin declared for this ablation" if margin else
                   "equivalent: not tested (no margin declared: --margin, or margin in experiments/ablations.yaml)")
    if len(looks) == 1 and design.looks == (design.max_seeds,):
        how = f"one look at {looks[0]} seed(s), Holm over {rows} row(s) at alpha {design.alpha:g}"
    else:
        how = (f"{design.describe()}; looks at {', '.join(map(str, looks))} seeds; Holm over {rows} row(s) by "
               f"Maurer-Bretz recycling; resolved_at in ablation.csv says at which look")
    return (f"Verdict: better / worse: the test of no difference rejects; {equivalence}; inconclusive: neither "
            f"(no claim of no effect). {how[0].upper()}{how[1:]}.")
