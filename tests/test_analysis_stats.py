"""The statistics of the ablation table against scipy/statsmodels or a hand computation, on small frames
and prediction files made here: Welch when rows share no seeds, McNemar and a paired bootstrap over images
for single runs (with Clopper-Pearson intervals), missing / unreadable / unpairable predictions, Holm,
the seeds-needed and minimum-detectable-difference lines, and the choice of the reference row."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower, TTestPower

from analysis.stats.ablation import analyse
from analysis.stats.compare import holm
from analysis.stats.reference import UnknownReferenceError
from src.train.record_io import PREDICTIONS_FILE


def runs_frame(rows, tmp_path) -> pd.DataFrame:
    """(fusion, seed, top1) -> the columns analyse needs, one run dir per run."""
    frame = pd.DataFrame(rows, columns=["fusion", "seed", "top1"])
    frame["run_dir"] = [str(tmp_path / f"{fusion}_{seed}") for fusion, seed, _ in rows]
    return frame


def save_predictions(run_dir, target, pred):
    run_dir.mkdir(parents=True, exist_ok=True)
    np.savez(run_dir / PREDICTIONS_FILE, target=np.asarray(target, np.int64), pred=np.asarray(pred, np.int64),
             pred_branch=np.stack([pred, pred]).astype(np.int64))


def test_rows_sharing_no_seeds_fall_back_to_welch_and_say_so(tmp_path):
    runs = runs_frame([("cross", 0, 80.0), ("cross", 1, 82.0), ("cross", 2, 84.0),
                       ("none", 3, 70.0), ("none", 4, 71.5), ("none", 5, 73.0)], tmp_path)
    table = analyse(runs, ["fusion"]).table.set_index("fusion")
    expected = stats.ttest_ind([70.0, 71.5, 73.0], [80.0, 82.0, 84.0], equal_var=False)
    assert table.loc["none", "test"] == "Welch (unpaired)" and "unpaired" in table.loc["none", "note"]
    assert table.loc["none", "p_value"] == pytest.approx(expected.pvalue)
    assert (table.loc["none", "diff_ci_low"], table.loc["none", "diff_ci_high"]) == pytest.approx(
        expected.confidence_interval())
    # Welch's interval by hand: diff +- t(0.975, Welch-Satterthwaite df) * sqrt(s1^2/n1 + s2^2/n2)
    se = math.sqrt(1.5 ** 2 / 3 + 2.0 ** 2 / 3)
    df = se ** 4 / ((1.5 ** 2 / 3) ** 2 / 2 + (2.0 ** 2 / 3) ** 2 / 2)
    assert table.loc["none", "diff_ci_high"] == pytest.approx(-10.5 + stats.t.ppf(0.975, df) * se)


def single_run_sweep(tmp_path, n_images=400):
    """cross right on images 0..299 (75%); none right on 0..259 and 300..319 (70%): 40 vs 20 discordant."""
    target = np.arange(n_images) % 10
    cross_pred, none_pred = target.copy(), target.copy()
    cross_pred[300:] += 1
    none_pred[260:300] += 1
    none_pred[320:] += 1
    runs = runs_frame([("cross", 0, 75.0), ("none", 0, 70.0)], tmp_path)
    save_predictions(tmp_path / "cross_0", target, cross_pred % 10)
    save_predictions(tmp_path / "none_0", target, none_pred % 10)
    return runs, target


def test_single_runs_are_compared_over_images_like_statsmodels_mcnemar_and_a_hand_binomial_test(tmp_path):
    runs, target = single_run_sweep(tmp_path)
    ablation = analyse(runs, ["fusion"])
    row = ablation.table.set_index("fusion").loc["none"]
    assert row["test"] == "McNemar exact" and "400 validation images" in row["note"]
    both, cross_only, none_only, neither = 260, 40, 20, 80
    assert row["p_value"] == pytest.approx(mcnemar([[both, cross_only], [none_only, neither]], exact=True).pvalue)
    assert row["p_value"] == pytest.approx(stats.binomtest(none_only, cross_only + none_only, 0.5).pvalue)
    assert row["diff_vs_ref"] == pytest.approx(-5.0)
    # Paired bootstrap over images ~ the normal interval of the mean per-image difference (d in {-1, 0, 1}).
    d = np.r_[np.zeros(both + neither), -np.ones(cross_only), np.ones(none_only)]
    half_width = 100 * 1.96 * d.std(ddof=1) / math.sqrt(len(d))
    assert row["diff_ci_low"] == pytest.approx(-5.0 - half_width, abs=0.6)
    assert row["diff_ci_high"] == pytest.approx(-5.0 + half_width, abs=0.6)
    assert analyse(runs, ["fusion"]).table.equals(ablation.table)  # fixed bootstrap seed: reproducible
    assert "McNemar" in ablation.legend and "Clopper-Pearson" in ablation.legend
    assert "not computable" in ablation.seeds_needed
    assert math.isnan(row["mdd"]) and ablation.power_line.startswith("Minimum detectable difference: not computable")


def test_single_run_mean_interval_is_clopper_pearson_by_hand(tmp_path):
    runs, _ = single_run_sweep(tmp_path)
    cross = analyse(runs, ["fusion"]).table.set_index("fusion").loc["cross"]
    correct, total = 300, 400  # Clopper-Pearson from the beta distribution
    low, high = stats.beta.ppf(0.025, correct, total - correct + 1), stats.beta.ppf(0.975, correct + 1, total - correct)
    assert (cross["top1_ci_low"], cross["top1_ci_high"]) == pytest.approx((100 * low, 100 * high))


def test_unreadable_or_missing_predictions_are_named_and_leave_nan(tmp_path):
    runs, _ = single_run_sweep(tmp_path)
    (tmp_path / "none_0" / PREDICTIONS_FILE).write_bytes(b"not a zip file")
    warnings = []
    row = analyse(runs, ["fusion"], warn=warnings.append).table.set_index("fusion").loc["none"]
    assert math.isnan(row["p_value"]) and math.isnan(row["diff_ci_low"]) and math.isnan(row["top1_ci_low"])
    assert row["test"] == "n/a" and "unreadable" in row["note"]
    assert len(warnings) == 1 and str(tmp_path / "none_0") in warnings[0] and "unreadable" in warnings[0]
    (tmp_path / "none_0" / PREDICTIONS_FILE).unlink()
    row = analyse(runs, ["fusion"], warn=warnings.append).table.set_index("fusion").loc["none"]
    assert "missing" in row["note"] and "missing" in warnings[-1]


def test_predictions_over_different_images_are_not_paired(tmp_path):
    runs, target = single_run_sweep(tmp_path)
    save_predictions(tmp_path / "none_0", target[::-1], target[::-1])
    warnings = []
    row = analyse(runs, ["fusion"], warn=warnings.append).table.set_index("fusion").loc["none"]
    assert math.isnan(row["p_value"]) and "not pairable over images" in row["note"]
    assert len(warnings) == 1 and "targets differ" in warnings[0]


def test_rows_identical_on_every_seed_get_p_1_not_nan(tmp_path):
    runs = runs_frame([("cross", 0, 80.0), ("cross", 1, 82.0), ("none", 0, 80.0), ("none", 1, 82.0)], tmp_path)
    row = analyse(runs, ["fusion"]).table.set_index("fusion").loc["none"]
    assert row["p_value"] == 1.0 and row["diff_vs_ref"] == 0.0 and "identical" in row["note"]


def test_holm_matches_statsmodels_and_leaves_untested_rows_nan():
    adjusted = holm([0.01, float("nan"), 0.04, 0.03])
    expected = multipletests([0.01, 0.04, 0.03], method="holm")[1]
    assert math.isnan(adjusted[1])
    assert adjusted[[0, 2, 3]] == pytest.approx(expected)
    assert expected == pytest.approx([0.03, 0.06, 0.06])  # by hand: 3 x 0.01, max(2 x 0.03, ...), 1 x 0.04 -> 0.06


def test_seeds_needed_is_the_ttestpower_answer_for_the_smallest_gap(tmp_path):
    runs = runs_frame([("cross", 0, 80.0), ("cross", 1, 82.0), ("cross", 2, 84.0),
                       ("pairwise", 0, 80.5), ("pairwise", 1, 82.2), ("pairwise", 2, 84.9),  # gap 0.53
                       ("none", 0, 70.0), ("none", 1, 71.0), ("none", 2, 73.0)], tmp_path)  # gap 10.67
    line = analyse(runs, ["fusion"]).seeds_needed
    differences = np.array([0.5, 0.2, 0.9])
    effect = differences.mean() / differences.std(ddof=1)
    expected = math.ceil(TTestPower().solve_power(effect_size=effect, alpha=0.05, power=0.8))
    assert f"about {expected} seeds per row" in line and "pairwise vs cross" in line
    assert "TTestPower" in line and "80% power" in line


def test_seeds_needed_ignores_a_float_rounding_gap_and_caps_the_count(tmp_path):
    # Two rows with the same mean up to float rounding (Δ prints as 0.00): no gap, not 10^13 seeds.
    runs = runs_frame([("cross", 0, 98.0555555), ("cross", 1, 97.5), ("cross", 2, 98.6111111),
                       ("none", 0, 97.2222222), ("none", 1, 98.3333333), ("none", 2, 98.6111111 + 1e-12)], tmp_path)
    ablation = analyse(runs, ["fusion"])
    assert abs(ablation.table.set_index("fusion").loc["none", "diff_vs_ref"]) < 1e-9
    assert ablation.seeds_needed == ("Seeds needed: no gap to the reference to resolve (every difference is under "
                                     "0.005 points).")
    runs = runs_frame([("cross", 0, 80.0), ("cross", 1, 82.0), ("cross", 2, 84.0),
                       ("none", 0, 80.5), ("none", 1, 81.5), ("none", 2, 84.03)], tmp_path)  # gap 0.01, sd 0.50
    assert "Seeds needed: more than 1,000 seeds per row" in analyse(runs, ["fusion"]).seeds_needed


def t_test_power(effect_size: float, df: int, noncentrality_per_effect: float) -> float:
    """Two-sided power of a t-test at alpha 0.05 from scipy's noncentral t: the outside check on statsmodels."""
    critical = stats.t.ppf(0.975, df)
    noncentrality = effect_size * noncentrality_per_effect
    return stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality)


def test_minimum_detectable_difference_of_a_paired_row_is_ttestpower_at_its_seeds(tmp_path):
    # differences none - cross of 1, 3, 1, 3, 2 over five seeds: mean 2, sd exactly 1.0
    runs = runs_frame([("cross", seed, 80.0 + seed) for seed in range(5)] +
                      [("none", seed, 80.0 + seed + diff) for seed, diff in enumerate([1, 3, 1, 3, 2])], tmp_path)
    ablation = analyse(runs, ["fusion"])
    mdd = ablation.table.set_index("fusion").loc["none", "mdd"]
    expected = TTestPower().solve_power(effect_size=None, nobs=5, alpha=0.05, power=0.8, alternative="two-sided")
    assert mdd == pytest.approx(expected * 1.0) and mdd == pytest.approx(1.682, abs=1e-3)  # ~1.7 sds at n = 5
    assert t_test_power(mdd / 1.0, df=4, noncentrality_per_effect=math.sqrt(5)) == pytest.approx(0.8, abs=1e-4)
    assert ablation.power_line == ("Minimum detectable difference at the seeds run (80% power, alpha 0.05 two-sided "
                                   "before Holm; paired t over 5 seeds): none 1.68 points; largest 1.68.")
    assert ablation.notes[1:4] == [ablation.verdict_line, ablation.seeds_needed, ablation.power_line]
    assert math.isnan(ablation.table.set_index("fusion").loc["cross", "mdd"])  # the reference


def test_minimum_detectable_difference_of_an_unpaired_row_is_ttestindpower_in_pooled_sds(tmp_path):
    cross, none = [80.0, 82.0, 84.0], [70.0, 71.0, 73.0, 74.0]  # no shared seeds: Welch
    runs = runs_frame([("cross", seed, top1) for seed, top1 in enumerate(cross)] +
                      [("none", seed + 3, top1) for seed, top1 in enumerate(none)], tmp_path)
    ablation = analyse(runs, ["fusion"])
    row = ablation.table.set_index("fusion").loc["none"]
    pooled_sd = math.sqrt((2 * np.var(cross, ddof=1) + 3 * np.var(none, ddof=1)) / 5)
    effect = TTestIndPower().solve_power(effect_size=None, nobs1=3, ratio=4 / 3, alpha=0.05, power=0.8)
    assert row["test"] == "Welch (unpaired)" and row["mdd"] == pytest.approx(effect * pooled_sd)
    assert t_test_power(effect, df=5, noncentrality_per_effect=math.sqrt(3 * 4 / 7)) == pytest.approx(0.8, abs=1e-4)
    assert "unpaired t over 3 and 4 seeds" in ablation.power_line
    assert f"none {row['mdd']:.2f} points" in ablation.power_line


def two_factor_runs(tmp_path):
    rows = [("cross", "4/8", 0, 80.0), ("cross", "2/8", 0, 83.0), ("none", "4/8", 0, 79.0)]
    frame = pd.DataFrame(rows, columns=["fusion", "patch_size", "seed", "top1"])
    frame["run_dir"] = [str(tmp_path / str(index)) for index in range(len(frame))]
    return frame


def test_reference_is_cross_by_default_else_the_best_row_and_ref_picks_by_label_or_unique_value(tmp_path):
    runs = runs_frame([("none", 0, 90.0), ("cross", 0, 80.0), ("pairwise", 0, 85.0)], tmp_path)
    assert analyse(runs, ["fusion"]).reference == "cross"
    assert analyse(runs[runs["fusion"] != "cross"], ["fusion"]).reference == "none"  # best without cross
    assert analyse(runs, ["fusion"], ref="pairwise").reference == "pairwise"
    two = two_factor_runs(tmp_path)
    assert analyse(two, ["fusion", "patch_size"]).reference == "cross, 2/8"  # two cross rows: the best
    assert analyse(two, ["fusion", "patch_size"], ref="cross, 4/8").reference == "cross, 4/8"
    assert analyse(two, ["fusion", "patch_size"], ref="fusion=none, patch_size=4/8").reference == "none, 4/8"
    assert analyse(two, ["fusion", "patch_size"], ref="none").reference == "none, 4/8"  # a value one row has
    with pytest.raises(UnknownReferenceError, match="matches 2 rows"):
        analyse(two, ["fusion", "patch_size"], ref="cross")


def test_unknown_reference_is_an_error_listing_the_rows(tmp_path):
    runs = runs_frame([("none", 0, 90.0), ("cross", 0, 80.0)], tmp_path)
    with pytest.raises(UnknownReferenceError, match="'crosss' matches no row; the rows are: cross; none"):
        analyse(runs, ["fusion"], ref="crosss")
