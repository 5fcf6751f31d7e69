"""The table's flags on sweep folders written here with known curves: a row whose validation top-1 still
moves over its last epochs is "not converged", a row whose seeds spread or collapse is "seeds disagree"; a
flagged row shows the flag instead of its number (Markdown, LaTeX, CSV's flag column), is compared with
nothing and is never the best row; collate's thresholds change the verdict."""
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from analysis.collate import main as collate_main
from analysis.present.tables import ablation_table
from analysis.runs.local import load_runs
from analysis.stats.ablation import analyse
from analysis.stats.flags import Checks, check_row, last_epochs_span

FLAT = [40.0, 70.0, 85.0, 87.5, 88.0, 88.2, 88.0]  # within 0.2 over the last 3 epochs
RISING = [40.0, 60.0, 70.0, 76.0, 80.0, 83.0, 85.0]  # +5 over the last 3 epochs: training stopped too early


def write_run(sweep: Path, fusion: str, seed: int, curve, final=None) -> None:
    """A completed results.json whose history is ``curve`` (validation top-1 per epoch)."""
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
    (run_dir / "results.json").write_text(json.dumps(results))


def shifted(curve, points):
    return [value + points for value in curve]


def write_sweep(root: Path, rows) -> Path:
    """rows: {fusion: [curve per seed]}."""
    sweep = root / "sweep"
    for fusion, curves in rows.items():
        for seed, curve in enumerate(curves):
            write_run(sweep, fusion, seed, curve)
    return sweep


def table_of(sweep: Path, **checks) -> pd.DataFrame:
    return analyse(load_runs([sweep]).runs, ["fusion"], checks=Checks(**checks)).table.set_index("fusion")


def test_a_curve_still_rising_over_the_last_epochs_is_flagged_not_converged(tmp_path):
    assert last_epochs_span([{"epoch": e, "top1": v} for e, v in enumerate(RISING)], 3) == pytest.approx(5.0)
    sweep = write_sweep(tmp_path, {"cross": [FLAT, shifted(FLAT, 1), shifted(FLAT, -1)],
                                   "none": [FLAT, RISING, shifted(FLAT, 0.5)]})  # one rising seed is enough
    table = table_of(sweep)
    assert table.loc["none", "flag"] == "not converged (last 3 epochs span 5.00)"
    assert table.loc["none", "converged"] is False and table.loc["none", "last_epochs_span"] == pytest.approx(5.0)


def test_a_curve_flat_within_a_point_over_the_last_epochs_is_not_flagged(tmp_path):
    sweep = write_sweep(tmp_path, {"cross": [FLAT, shifted(FLAT, 1), shifted(FLAT, -1)]})
    row = table_of(sweep).loc["cross"]
    assert row["flag"] == "" and row["converged"] is True and row["last_epochs_span"] == pytest.approx(0.2)
    # a late fall is not flat either: the final number depends on when training stopped
    falling = pd.DataFrame({"seed": [0], "top1": [80.0], "history": [[{"epoch": e, "top1": v}
                                                                       for e, v in enumerate([88.0, 88.0, 80.0])]]})
    assert check_row(falling, Checks()).flag == "not converged (last 3 epochs span 8.00)"


def test_runs_shorter_than_the_window_are_not_judged_printed_and_named_under_the_table(tmp_path):
    sweep = write_sweep(tmp_path, {"cross": [[30.0, 60.0], [31.0, 61.0]], "none": [FLAT, FLAT]})
    ablation = analyse(load_runs([sweep]).runs, ["fusion"])
    table = ablation.table.set_index("fusion")
    assert table.loc["cross", "flag"] == "" and table.loc["cross", "converged"] is None
    assert "60.50 ± 0.71" in ablation_table(ablation).set_index("fusion").loc["cross", "top-1 (%)"]
    assert ablation.flag_notes == ["Convergence not judged (cross): runs with fewer than 3 epochs of validation "
                                   "history; their numbers are printed unchecked."]


def test_a_collapsed_seed_flags_the_row_even_when_the_std_check_is_off(tmp_path):
    sweep = write_sweep(tmp_path, {"cross": [FLAT, shifted(FLAT, 1), shifted(FLAT, -30)]})
    flag = table_of(sweep, max_seed_std=100.0).loc["cross", "flag"]
    assert flag == "seeds disagree (seed 2 at 58.00, others' median 88.50)"
    assert table_of(sweep).loc["cross", "flag"] == "seeds disagree (std 17.62; seed 2 at 58.00, others' median 88.50)"


def test_seeds_spread_above_the_std_threshold_flag_the_row_without_a_collapsed_seed(tmp_path):
    sweep = write_sweep(tmp_path, {"cross": [shifted(FLAT, -8), shifted(FLAT, -2), shifted(FLAT, 4)]})
    assert table_of(sweep).loc["cross", "flag"] == "seeds disagree (std 6.00)"  # -8 is 9 below the others' median


def test_a_flagged_row_shows_its_flag_not_its_number_in_markdown_latex_and_csv(tmp_path, capsys):
    sweep = write_sweep(tmp_path, {"cross": [FLAT, shifted(FLAT, 1), shifted(FLAT, -1)],
                                   "none": [RISING, shifted(RISING, 1), shifted(RISING, -1)],
                                   "all_attn": [shifted(FLAT, -3), shifted(FLAT, -2), shifted(FLAT, -4)]})
    out = tmp_path / "out"
    assert collate_main([str(sweep), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    none_line = next(line for line in printed.splitlines() if line.startswith("| none"))
    assert "not converged (last 3 epochs span 5.00)" in none_line and "85.00" not in none_line
    assert [cell.strip() for cell in none_line.split("|")[3:6]] == ["-", "-", "-"]  # CI, Δ, p
    all_attn_line = next(line for line in printed.splitlines() if line.startswith("| all_attn"))
    assert "85.00 ± 1.00" in all_attn_line and "-3.00 [" in all_attn_line  # the other rows as before
    assert "Not converged (none): a run's validation top-1 moved more than 1 point over its last 3 epochs" in printed
    assert "train.epochs=14; these runs had 7" in printed and "metrics.csv" in printed
    latex = (out / "ablation.tex").read_text()
    assert "none & not converged (last 3 epochs span 5.00) & - & - & - & 3" in latex and "% Not converged" in latex
    csv = pd.read_csv(out / "ablation.csv").set_index("fusion")
    assert csv.loc["none", "flag"] == "not converged (last 3 epochs span 5.00)" and math.isnan(csv.loc["cross", "flag"])
    assert csv.loc["none", "top1_mean"] == pytest.approx(85.0)  # what the runs measured, kept for diagnosis
    assert math.isnan(csv.loc["none", "diff_vs_ref"]) and math.isnan(csv.loc["none", "p_holm"])
    assert csv.loc["none", "test"] == "none (flagged)"
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


def test_a_flagged_cross_is_not_the_reference_unless_ref_names_it(tmp_path):
    sweep = write_sweep(tmp_path, {"cross": [RISING, shifted(RISING, 1)], "none": [FLAT, shifted(FLAT, 1)],
                                   "all_attn": [shifted(FLAT, -3), shifted(FLAT, -2)]})
    runs = load_runs([sweep]).runs
    ablation = analyse(runs, ["fusion"])
    assert ablation.reference == "none" and "cross is flagged" in ablation.legend
    chosen = analyse(runs, ["fusion"], ref="cross")
    assert chosen.reference == "cross" and chosen.table["p_value"].isna().all()
    assert "the reference row is flagged" in chosen.table.set_index("fusion").loc["none", "note"]
    assert "no comparison was made" in chosen.seeds_needed
    assert ablation_table(chosen).set_index("fusion").loc["cross", "Δ vs cross [95% CI]"] == "ref"


def test_collate_thresholds_change_the_verdict(tmp_path, capsys):
    sweep = write_sweep(tmp_path, {"cross": [FLAT, shifted(FLAT, 1), shifted(FLAT, -1)],
                                   "none": [RISING, shifted(RISING, 4), shifted(RISING, -4)]})  # std 4
    def none_line(*options):
        assert collate_main([str(sweep), "--out", str(tmp_path / "out"), "--no-plots", *options]) == 0
        return next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| none"))

    assert "not converged (last 3 epochs span 5.00); seeds disagree (std 4.00)" in none_line()
    assert "seeds disagree (std 4.00)" in none_line("--converge-tol", "5")
    assert "not converged" in none_line("--converge-tol", "5", "--converge-epochs", "4")  # 76 -> 85 spans 9
    assert "85.00 ± 4.00" in none_line("--converge-tol", "5", "--max-seed-std", "4")
    assert "seeds disagree (seed 2" in none_line("--converge-tol", "5", "--max-seed-std", "4", "--collapse-gap", "3")


def test_collate_rejects_thresholds_that_cannot_judge_anything(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        collate_main([str(tmp_path), "--converge-epochs", "1"])
    assert exit_info.value.code == 2 and "give 2 or more" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        collate_main([str(tmp_path), "--max-seed-std", "-1"])
