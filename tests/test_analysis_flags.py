"""The table's flags on sweep folders written here with known curves: a row whose validation top-1 still
moves over its last 3 epochs, by more than the tol (3 points: the tail of a cosine schedule on the CPU proxy
still climbs 0.6-2.0) and more than the validation set's binomial noise explains, is "not converged"; a row
whose seeds spread more than the other rows' seeds and the validation noise predict, or whose seed collapses,
is "seeds disagree"; a flagged row shows the flag instead of its number (Markdown, LaTeX, CSV's flag column),
is compared with nothing and is never the best row; collate's thresholds change the verdict. Rises, noise and
F-tests are checked against numpy / scipy computed here."""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.collate import main as collate_main
from analysis.present.tables import ablation_table
from analysis.runs.local import load_runs
from analysis.stats.ablation import analyse
from analysis.stats.flags import Checks, check_row, last_epochs_trend
from analysis.verdicts import main as verdicts_main

FLAT = [40.0, 70.0, 85.0, 87.5, 88.0, 88.2, 88.0]  # its last 3 epochs' trend rises 0.00
RISING = [40.0, 55.0, 65.0, 72.0, 77.0, 81.0, 85.0]  # its last 3 epochs' trend rises 8.00: stopped too early
DIGITS_VAL, LARGE_VAL = 360, 10080  # the digits' validation split; one as large as 28 of them


def write_run(sweep: Path, fusion: str, seed: int, curve, final=None, num_val=DIGITS_VAL) -> None:
    """A completed results.json whose history is ``curve`` (validation top-1 per epoch); ``num_val`` None:
    an older record without ``data_sizes``."""
    run_dir = sweep / f"fusion={fusion},seed={seed}"
    run_dir.mkdir(parents=True)
    top1 = curve[-1] if final is None else final
    history = [{"epoch": epoch, "top1": value, "top5": 99.0, "images_per_s": 100.0}
               for epoch, value in enumerate(curve)]
    results = {"schema": 1, "status": "completed", "reason": None, "seed": seed, "config_hash": f"{fusion}-{seed}",
               "config": {"fusion": {"name": fusion}, "seed": seed}, "choices": {"fusion": fusion},
               "overrides": [f"fusion={fusion}", f"seed={seed}"], "params_m": 0.58, "gmacs": 0.012,
               "final": {"top1": top1, "top5": 99.0}, "best": {"top1": max(curve)}, "history": history,
               "wall_time_s": 10.0, "run_dir": str(run_dir)}
    if num_val is not None:
        results["data_sizes"] = {"num_train": 1437, "num_val": num_val}
    (run_dir / "results.json").write_text(json.dumps(results))


def shifted(curve, points):
    return [value + points for value in curve]


def write_sweep(root: Path, rows, num_val=DIGITS_VAL) -> Path:
    """rows: {fusion: [curve per seed]}."""
    sweep = root / "sweep"
    for fusion, curves in rows.items():
        for seed, curve in enumerate(curves):
            write_run(sweep, fusion, seed, curve, num_val=num_val)
    return sweep


def table_of(sweep: Path, **checks) -> pd.DataFrame:
    return analyse(load_runs([sweep]).runs, ["fusion"], checks=Checks(**checks)).table.set_index("fusion")


def one_run(curve, num_val=None) -> pd.DataFrame:
    return pd.DataFrame({"seed": [0], "top1": [curve[-1]], "num_val": [num_val],
                         "history": [[{"epoch": e, "top1": v} for e, v in enumerate(curve)]]})


def hand_trend(window, num_val):
    """(rise, its SE) by the rule's definition, from scipy's regression and the binomial sd."""
    x = np.arange(len(window))
    rise = stats.linregress(x, window).slope * (len(window) - 1)
    p = np.mean(window) / 100
    sigma = 100 * math.sqrt(p * (1 - p) / num_val)
    return rise, (len(window) - 1) * sigma / math.sqrt(np.sum((x - x.mean()) ** 2))


def test_a_curve_still_rising_over_the_last_epochs_is_flagged_not_converged(tmp_path):
    rise, se = hand_trend(RISING[-3:], DIGITS_VAL)
    assert (rise, se) == pytest.approx((8.0, 2.924), abs=1e-3)  # sd 2.07 at 81% on 360 images; 8 > 2 SE
    trend = last_epochs_trend([{"epoch": e, "top1": v} for e, v in enumerate(RISING)], 3, DIGITS_VAL)
    assert (trend.rise, trend.noise_se) == pytest.approx((rise, se))
    sweep = write_sweep(tmp_path, {"cross": [FLAT, shifted(FLAT, 1), shifted(FLAT, -1)],
                                   "none": [FLAT, RISING, shifted(FLAT, 0.5)]})  # one rising seed is enough
    table = table_of(sweep)
    assert table.loc["none", "flag"] == "not converged (last 3 epochs rise 8.00 points by their trend, noise SE 2.92)"
    assert table.loc["none", "converged"] is False and table.loc["none", "last_epochs_rise"] == pytest.approx(8.0)
    flat_rise = hand_trend(FLAT[-3:], DIGITS_VAL)[0]
    assert table.loc["cross", "flag"] == ""
    assert table.loc["cross", "last_epochs_rise"] == pytest.approx(flat_rise, abs=1e-9)


def test_a_flat_curve_with_binomial_sized_jitter_is_not_flagged(tmp_path):
    jitter = [0.0, 0.3, -0.3, 0.1]  # a few tenths: what 10,080 images give at 88% (sd 0.32)
    curve = FLAT[:3] + [88.0 + step for step in jitter]
    sweep = write_sweep(tmp_path, {"cross": [curve, shifted(curve, 0.2), shifted(curve, -0.2)]}, num_val=LARGE_VAL)
    row = table_of(sweep).loc["cross"]
    assert row["flag"] == "" and row["converged"] is True
    rise, se = hand_trend(curve[-3:], LARGE_VAL)
    assert abs(rise) < 2 * se and row["last_epochs_rise"] == pytest.approx(rise)


def test_jitter_that_spans_more_than_a_point_on_360_images_is_no_longer_flagged(tmp_path):
    window = [96.94, 97.78, 96.67]  # 349, 352, 348 of 360: one evaluation there at 97% has an sd of 0.9 points
    assert max(window) - min(window) > 1.0  # the old rule (max - min over the last 3 epochs > 1 point) flagged it
    rise, se = hand_trend(window, DIGITS_VAL)
    assert abs(rise) < 0.3 < 2 * se  # the trend, last - first at k = 3, ignores the swing in between
    sweep = write_sweep(tmp_path, {"cross": [FLAT[:4] + shifted(window, seed / 10) for seed in range(3)]})
    row = table_of(sweep).loc["cross"]
    assert row["flag"] == "" and row["converged"] is True
    assert row["last_epochs_rise"] == pytest.approx(rise)


def test_a_trend_inside_the_noise_of_a_small_validation_set_passes_and_on_a_large_one_flags(tmp_path):
    climb = [70.0, 80.0, 86.0, 88.0, 90.0, 92.0]  # +4 over the last 3 epochs, beyond the 3-point tol
    (rise, small_se), (_, large_se) = hand_trend(climb[-3:], DIGITS_VAL), hand_trend(climb[-3:], LARGE_VAL)
    assert rise == pytest.approx(4.0) and rise > Checks().converge_tol
    assert rise < 2 * small_se and rise > 2 * large_se  # SE 2.24 on 360 images at 90%, 0.42 on 10,080
    assert check_row(one_run(climb, DIGITS_VAL), Checks()).flag == ""
    assert check_row(one_run(climb, LARGE_VAL), Checks()).flag == (
        f"not converged (last 3 epochs rise 4.00 points by their trend, noise SE {large_se:.2f})")
    # validation size unknown (older results, W&B runs): the tol alone judges
    unknown = check_row(one_run(climb), Checks())
    assert unknown.flag == "not converged (last 3 epochs rise 4.00 points by their trend, validation size unknown)"
    assert check_row(one_run(climb), Checks(converge_tol=4.1)).flag == ""
    # a late fall is not flat either: the final number depends on when training stopped
    falling = one_run([88.0, 88.0, 88.0, 80.0], LARGE_VAL)
    assert check_row(falling, Checks()).flag.startswith("not converged (last 3 epochs fall 8.00 points by their trend")
    assert check_row(falling, Checks()).last_epochs_rise == pytest.approx(hand_trend([88.0, 88.0, 80.0], LARGE_VAL)[0])


def test_the_tail_of_a_real_cpu_proxy_run_is_the_budget_at_the_defaults_and_flagged_at_a_1_point_tol():
    assert (Checks().converge_epochs, Checks().converge_tol) == (3, 3.0)
    tail = [73.93, 77.46, 78.86, 80.12, 80.34]  # validation top-1 per epoch at the end of a 12-epoch cosine run
    rise, se = hand_trend(tail[-3:], LARGE_VAL)
    assert rise == pytest.approx(1.48) and 2 * se < rise < Checks().converge_tol  # SE 0.57 at 80% on 10,080
    run = one_run(tail, LARGE_VAL)
    verdict = check_row(run, Checks())
    assert verdict.flag == "" and verdict.converged is True and verdict.last_epochs_rise == pytest.approx(rise)
    assert check_row(run, Checks(converge_tol=1.0)).flag == (
        f"not converged (last 3 epochs rise 1.48 points by their trend, noise SE {se:.2f})")


def test_runs_shorter_than_the_window_are_not_judged_printed_and_named_under_the_table(tmp_path):
    sweep = write_sweep(tmp_path, {"cross": [[30.0, 60.0], [31.0, 61.0]], "none": [FLAT, FLAT]})
    ablation = analyse(load_runs([sweep]).runs, ["fusion"])
    table = ablation.table.set_index("fusion")
    assert table.loc["cross", "flag"] == "" and table.loc["cross", "converged"] is None
    assert math.isnan(table.loc["cross", "last_epochs_rise"])
    assert "60.50 ± 0.71" in ablation_table(ablation).set_index("fusion").loc["cross", "top-1 (%)"]
    assert ablation.flag_notes == ["Convergence not judged (cross): runs with fewer than 3 epochs of validation "
                                   "history; their numbers are printed unchecked."]


def spread_rows(spreads):
    """{fusion: (a, b, c)}: three seeds of FLAT shifted by those points."""
    return {fusion: [shifted(FLAT, points) for points in shifts] for fusion, shifts in spreads.items()}


def test_a_row_spread_far_beyond_the_other_rows_seeds_is_flagged_and_one_like_them_is_not(tmp_path):
    quiet = {"cross": (0, 0.5, -0.5), "pairwise": (0.3, 0.8, -0.2), "all_attn": (-1, -0.5, -1.5)}  # std 0.5 each
    sweep = write_sweep(tmp_path / "a", spread_rows({**quiet, "none": (0, 3, -3)}), num_val=LARGE_VAL)
    table = table_of(sweep)
    p_value = stats.f.sf(3.0 ** 2 / 0.5 ** 2, 2, 6)  # pooled over 3 rows x 2 df; the binomial sd 0.32 is smaller
    assert p_value == pytest.approx((1 + 2 * 36 / 6) ** -3)  # F(2, d) by hand: sf(F) = (1 + 2F / d)^(-d / 2)
    assert table.loc["none", "flag"] == ("seeds disagree (std 3.00 vs 0.50 expected from the other rows, F-test "
                                         "p 0.0005)")
    assert (table.drop(index="none")["flag"] == "").all()
    consistent = write_sweep(tmp_path / "b", spread_rows({**quiet, "none": (0, 0.8, -0.8)}), num_val=LARGE_VAL)
    assert (table_of(consistent)["flag"] == "").all()  # std 0.8 among 0.5s: F-test p 0.16
    # on 360 images one evaluation alone has an sd of 1.7 points at 88%: std 4 over 3 seeds is p 0.004 against it
    small = write_sweep(tmp_path / "c", spread_rows({**quiet, "none": (0, 4, -4)}))
    assert table_of(small).loc["none", "flag"] == ""


def test_a_collapsed_seed_elsewhere_does_not_hide_a_disagreement(tmp_path):
    rows = {"cross": (0, 0.5, -0.5), "pairwise": (0.3, 0.8, -0.2), "cls_token": (-1, -0.5, -1.5),
            "all_attn": (0, 1, -30), "none": (0, 4, -4)}
    table = table_of(write_sweep(tmp_path, spread_rows(rows), num_val=LARGE_VAL))
    assert "seed 2 at 58.00, others' median 88.50" in table.loc["all_attn", "flag"]
    assert table.loc["none", "flag"].startswith("seeds disagree (std 4.00 vs 0.50 expected from the other rows")


def test_a_pool_below_the_binomial_noise_is_floored_and_keeps_its_few_degrees_of_freedom(tmp_path):
    """The shipped encoders ablation's case: two rows of 3 seeds, one with a lucky std of 0.26 (under one
    evaluation's sd of 0.34 on 10,080 images), the other with the proxy's ordinary 1.52. Judged against the
    binomial variance as if it were the seed noise (chi-square) it would be flagged; against the floored pool
    with the pool's 2 df it is not."""
    rows = {"cross": (0, 1.76, -1.28), "none": (0, 0.3, -0.22)}  # std 1.52 and 0.26
    table = table_of(write_sweep(tmp_path / "a", spread_rows(rows), num_val=LARGE_VAL))
    assert (table["flag"] == "").all()
    sigma = 100 * math.sqrt(np.mean([p * (1 - p) for p in (0.88, 0.8976, 0.8672)]) / LARGE_VAL)
    std = np.std([88.0, 89.76, 86.72], ddof=1)
    assert stats.chi2.sf(2 * std ** 2 / sigma ** 2, 2) < 1e-4  # what the chi-square against the floor said
    assert stats.f.sf(std ** 2 / sigma ** 2, 2, 2) > 0.001  # what the F-test with the pool's df says
    # a spread far beyond even the floored pool is still flagged, and the text says the floor was used
    wild = table_of(write_sweep(tmp_path / "b", spread_rows({"cross": (0, 12, -12), "none": (0, 0.3, -0.22)}),
                                num_val=LARGE_VAL)).loc["cross", "flag"]
    assert wild.startswith("seeds disagree (std 12.00 vs ") and "floored at the binomial noise of 10080" in wild


def test_a_single_row_has_no_pool_and_is_judged_by_the_absolute_rule(tmp_path):
    spread = {"cross": (0, 2, -2)}  # std 2: ordinary seed noise, whatever the validation size
    for folder, num_val in (("a", LARGE_VAL), ("b", DIGITS_VAL), ("c", None)):
        assert table_of(write_sweep(tmp_path / folder, spread_rows(spread), num_val=num_val)).loc["cross", "flag"] == ""
    assert table_of(write_sweep(tmp_path / "d", spread_rows(spread), num_val=LARGE_VAL),
                    max_seed_std=1.5).loc["cross", "flag"] == (
        "seeds disagree (std 2.00 > 1.5, with no other row's seeds to judge it by)")


def test_a_collapsed_seed_flags_the_row_even_when_the_spread_check_passes(tmp_path):
    sweep = write_sweep(tmp_path, {"cross": [FLAT, shifted(FLAT, 1), shifted(FLAT, -30)]}, num_val=None)
    flag = table_of(sweep, max_seed_std=100.0).loc["cross", "flag"]
    assert flag == "seeds disagree (seed 2 at 58.00, others' median 88.50)"
    assert table_of(sweep).loc["cross", "flag"] == (
        "seeds disagree (std 17.62 > 3, with no other row's seeds to judge it by; "
        "seed 2 at 58.00, others' median 88.50)")


RISING_FLAG = "not converged (last 3 epochs rise 8.00 points by their trend, noise SE 2."  # 2.86 to 2.98: p 80-82%


def test_a_flagged_row_shows_its_flag_not_its_number_in_markdown_latex_and_csv(tmp_path, capsys):
    sweep = write_sweep(tmp_path, {"cross": [FLAT, shifted(FLAT, 1), shifted(FLAT, -1)],
                                   "none": [RISING, shifted(RISING, 1), shifted(RISING, -1)],
                                   "all_attn": [shifted(FLAT, -3), shifted(FLAT, -2.5), shifted(FLAT, -4)]})
    out = tmp_path / "out"
    assert collate_main([str(sweep), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    none_line = next(line for line in printed.splitlines() if line.startswith("| none"))
    assert RISING_FLAG in none_line and "85.00" not in none_line
    assert [cell.strip() for cell in none_line.split("|")[3:6]] == ["-", "-", "-"]  # CI, Δ, p
    all_attn_line = next(line for line in printed.splitlines() if line.startswith("| all_attn"))
    assert "84.83 ± 0.76" in all_attn_line and "-3.17 [" in all_attn_line  # the other rows as before
    assert ("Not converged (none): the least-squares trend of a run's validation top-1 over its last 3 epochs "
            "moves it by more than 3 points and by more than 2 standard errors") in printed
    assert "train.epochs=14; these runs had 7" in printed and "metrics.csv" in printed
    assert "Minimum detectable difference at the seeds run" in printed and "all_attn 0.94 points" in printed
    latex = (out / "ablation.tex").read_text()
    assert f"none & {RISING_FLAG}" in latex and "% Not converged" in latex
    assert "% Minimum detectable difference at the seeds run" in latex
    csv = pd.read_csv(out / "ablation.csv").set_index("fusion")
    assert csv.loc["none", "flag"].startswith(RISING_FLAG) and math.isnan(csv.loc["cross", "flag"])
    assert csv.loc["none", "top1_mean"] == pytest.approx(85.0)  # what the runs measured, kept for diagnosis
    assert math.isnan(csv.loc["none", "diff_vs_ref"]) and math.isnan(csv.loc["none", "p_holm"])
    assert math.isnan(csv.loc["none", "mdd"]) and math.isnan(csv.loc["cross", "mdd"])  # flagged, reference
    assert csv.loc["none", "test"] == "none (flagged)" and csv.loc["none", "last_epochs_rise"] == pytest.approx(8.0)
    assert list(csv.columns).index("mdd") == list(csv.columns).index("p_holm") + 1
    assert (out / "top1_vs_gflops.png").stat().st_size > 5000


def test_a_flagged_row_is_never_the_best_row_nor_compared_and_holm_counts_only_the_others(tmp_path):
    sweep = write_sweep(tmp_path, {"none": [shifted(RISING, 10), shifted(RISING, 11), shifted(RISING, 9)],  # best
                                   "pairwise": [FLAT, shifted(FLAT, 1), shifted(FLAT, -1)],
                                   "all_attn": [shifted(FLAT, -3), shifted(FLAT, -2), shifted(FLAT, -4)],
                                   "cls_token": [shifted(FLAT, -1), shifted(FLAT, 0.5), shifted(FLAT, -2)]})
    ablation = analyse(load_runs([sweep]).runs, ["fusion"])
    table = ablation.table.set_index("fusion")
    assert ablation.reference == "pairwise" and table.loc["none", "top1_mean"] > table.loc["pairwise", "top1_mean"]
    assert "the best mean top-1 of the unflagged rows" in ablation.legend
    assert math.isnan(table.loc["none", "p_value"]) and table.loc["all_attn", "test"] == "paired t"
    assert "over 2 comparison(s)" in ablation.legend  # Holm over the rows compared
    assert "none vs pairwise" not in ablation.seeds_needed
    # all_attn is 3 below pairwise on every seed: no spread to size a detectable difference from
    assert ablation.power_line.endswith("all_attn n/a (no spread), cls_token 0.94 points; largest 0.94.")
    assert "none" not in ablation.power_line.split(":", 1)[1]


def test_a_flagged_cross_is_not_the_reference_unless_ref_names_it(tmp_path):
    sweep = write_sweep(tmp_path, {"cross": [RISING, shifted(RISING, 1)], "none": [FLAT, shifted(FLAT, 1)],
                                   "all_attn": [shifted(FLAT, -3), shifted(FLAT, -2)]})
    runs = load_runs([sweep]).runs
    ablation = analyse(runs, ["fusion"])
    assert ablation.reference == "none" and "cross is flagged" in ablation.legend
    chosen = analyse(runs, ["fusion"], ref="cross")
    assert chosen.reference == "cross" and chosen.table["p_value"].isna().all()
    assert "the reference row is flagged" in chosen.table.set_index("fusion").loc["none", "note"]
    assert "no comparison was made" in chosen.seeds_needed and "no comparison was made" in chosen.power_line
    assert ablation_table(chosen).set_index("fusion").loc["cross", "Δ vs cross [95% CI]"] == "ref"


def test_collate_thresholds_change_the_verdict(tmp_path, capsys):
    def row_line(sweep, label, *options):
        assert collate_main([str(sweep), "--out", str(tmp_path / "out"), "--no-plots", *options]) == 0
        return next(line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {label}"))

    # older records without the validation size: the tol alone judges the trend
    rising = write_sweep(tmp_path / "a", {"cross": [FLAT, shifted(FLAT, 1), shifted(FLAT, -1)],
                                          "none": [RISING, shifted(RISING, 0.5), shifted(RISING, -0.5)]}, num_val=None)
    assert ("not converged (last 3 epochs rise 8.00 points by their trend, validation size unknown)"
            in row_line(rising, "none"))
    assert "not converged" in row_line(rising, "none", "--converge-tol", "5")
    assert "85.00 ± 0.50" in row_line(rising, "none", "--converge-tol", "10")
    assert "85.00 ± 0.50" in row_line(rising, "none", "--converge-tol", "5", "--converge-epochs", "2")  # 81 -> 85
    # one row, no validation size: nothing to judge the spread by but --max-seed-std
    spread = write_sweep(tmp_path / "b", {"cross": [FLAT, shifted(FLAT, 4), shifted(FLAT, -4)]}, num_val=None)
    assert "seeds disagree (std 4.00 > 3" in row_line(spread, "cross")
    assert "88.00 ± 4.00" in row_line(spread, "cross", "--max-seed-std", "5")
    assert "seeds disagree (seed 2 at 84.00, others' median 90.00)" in row_line(
        spread, "cross", "--max-seed-std", "5", "--collapse-gap", "3")


def test_collate_rejects_thresholds_that_cannot_judge_anything(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        collate_main([str(tmp_path), "--converge-epochs", "1"])
    assert exit_info.value.code == 2 and "give 2 or more" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        collate_main([str(tmp_path), "--max-seed-std", "-1"])


def test_verdicts_agree_when_a_perturbation_moves_every_run_but_no_row_across_a_threshold(tmp_path, capsys):
    """python -m analysis.verdicts: the same grid under a floating-point perturbation (another thread count or
    CPU) moves every run, as another seed would; the verdicts stay, and it says so with exit 0."""
    quiet = {"cross": (0, 0.5, -0.5), "none": (0.3, 0.8, -0.2), "pairwise": (-1, -0.5, -1.5)}
    first = write_sweep(tmp_path / "a", spread_rows(quiet), num_val=LARGE_VAL)
    moved = {fusion: tuple(points + 0.4 * (-1) ** seed for seed, points in enumerate(shifts))
             for fusion, shifts in quiet.items()}
    second = write_sweep(tmp_path / "b", spread_rows(moved), num_val=LARGE_VAL)
    assert verdicts_main([str(first), "--vs", str(second), "--names", "1 thread", "2 threads"]) == 0
    out = capsys.readouterr().out
    assert "| 1 thread: verdict" in out and "same verdicts on all 3 rows" in out
    # the spread p is the F-test's: none's std 0.5 against cross's and pairwise's pooled 0.5 over 4 df
    none_row = next(line for line in out.splitlines() if line.startswith("| none"))
    assert f"{stats.f.sf(1.0, 2, 4):.3f}" in none_row


def test_ablation_csv_carries_each_rows_rise_se_and_spread_p_that_verdicts_prints(tmp_path, capsys):
    """The verdicts and collate's table are one computation: the spread p and the largest rise's SE are
    columns of ablation.csv, equal to the F-test and the binomial SE worked out here."""
    quiet = {"cross": (0, 0.5, -0.5), "none": (0.3, 0.8, -0.2), "pairwise": (-1, -0.5, -1.5)}
    sweep = write_sweep(tmp_path / "a", spread_rows(quiet), num_val=LARGE_VAL)
    assert collate_main([str(sweep), "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    csv = pd.read_csv(tmp_path / "out" / "ablation.csv").set_index("fusion")
    assert csv.loc["none", "spread_p"] == pytest.approx(stats.f.sf(1.0, 2, 4))
    # the largest rise: seed 1's late climb, with the SE of its own last 3 values (not another seed's)
    late = [*FLAT[:-1], FLAT[-1] + 1.5]
    bumped = write_sweep(tmp_path / "b", {"cross": [FLAT] * 3, "none": [FLAT, late, FLAT]}, num_val=LARGE_VAL)
    assert collate_main([str(bumped), "--out", str(tmp_path / "out_b"), "--no-plots"]) == 0
    rise, se = hand_trend(late[-3:], LARGE_VAL)
    bumped_csv = pd.read_csv(tmp_path / "out_b" / "ablation.csv").set_index("fusion")
    assert bumped_csv.loc["none", "last_epochs_rise"] == pytest.approx(rise)
    assert bumped_csv.loc["none", "last_epochs_rise_se"] == pytest.approx(se)
    capsys.readouterr()
    assert verdicts_main([str(bumped), "--vs", str(bumped)]) == 0
    none_row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| none"))
    assert f"+{rise:.2f} ({se:.2f})" in none_row and f"{bumped_csv.loc['none', 'spread_p']:.3f}" in none_row


def test_verdicts_differ_when_one_set_flags_a_row_and_the_other_does_not(tmp_path, capsys):
    first = write_sweep(tmp_path / "a", {"cross": [FLAT] * 3, "none": [FLAT] * 3}, num_val=LARGE_VAL)
    second = write_sweep(tmp_path / "b", {"cross": [FLAT] * 3, "none": [FLAT, FLAT, RISING]}, num_val=LARGE_VAL)
    assert verdicts_main([str(first), "--vs", str(second)]) == 1
    out = capsys.readouterr().out
    none_row = next(line for line in out.splitlines() if line.startswith("| none"))
    assert "| result " in none_row and "| not converged " in none_row and "+8.00" in none_row
    assert none_row.rstrip(" |").endswith("NO") and "verdicts differ on none" in out


def test_verdicts_refuse_sets_of_different_rows(tmp_path, capsys):
    first = write_sweep(tmp_path / "a", {"cross": [FLAT] * 2, "none": [FLAT] * 2})
    second = write_sweep(tmp_path / "b", {"cross": [FLAT] * 2, "pairwise": [FLAT] * 2})
    assert verdicts_main([str(first), "--vs", str(second)]) == 2
    assert "the two sets hold different rows (cross, none vs cross, pairwise)" in capsys.readouterr().err
