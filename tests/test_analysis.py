"""The analysis package on Hydra-like sweep folders written here with known numbers: grouping, mean/std/n,
the paired comparison with cross, each (config, seed) counted once, per-branch columns, the three table
formats, plots, and skipping partial, corrupt and foreign folders. (The statistics on their own, against
scipy/statsmodels: test_analysis_stats.py.)"""
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from analysis.collate import main as collate_main
from analysis.present.plots import interval_error
from analysis.present.tables import ablation_table
from analysis.runs.local import load_runs
from analysis.runs.records import NoRunsError, warn_mixed_provenance
from analysis.runs.wandb_api import load_wandb_runs, wandb_run_to_record, wandb_run_to_row
from analysis.stats.ablation import analyse
from analysis.stats.summary import varying_factors
from src.train.naming import format_depth
from src.train.record import ModelSummary, RunRecord

from conftest import ROOT


def results(fusion: str, seed: int, top1: float, run_dir: Path, status: str = "completed", gmacs: float = 0.012,
            patch_size=(4, 8)) -> dict:
    config = {"model": {"name": "fusionvit_micro_32", "patch_size": list(patch_size), "embed_dim": [48, 96],
                        "depth": [[1, 2, 0], [1, 2, 0]]},
              "fusion": {"name": fusion, "layers": 1}, "data": {"name": "digits"}, "seed": seed}
    history = [{"epoch": 0, "top1": top1 / 2, "top5": 90.0, "val_loss": 1.0, "images_per_s": 100.0},
               {"epoch": 1, "top1": top1, "top5": 99.0, "val_loss": 0.5, "images_per_s": 120.0}]
    return {"schema": 1, "status": status, "reason": None if status == "completed" else "ValueError: boom",
            "config": config,
            "choices": {"model": "fusionvit_micro_32", "fusion": fusion, "data": "digits", "logger": "none"},
            "overrides": [f"fusion={fusion}", f"seed={seed}", f"model.patch_size=[{patch_size[0]},{patch_size[1]}]"],
            "config_hash": f"{fusion}-{patch_size}-{seed}", "seed": seed,  # like src.run: seed is in the config
            "model": {"name": "fusionvit_micro_32", "fusion": fusion, "img_size": 32, "patch_size": list(patch_size),
                      "embed_dim": [48, 96], "depth": [[1, 2, 0], [1, 2, 0]], "num_heads": [3, 3],
                      "fusion_layers": 1},
            "params_m": 0.58, "gmacs": gmacs, "fusion_params_m": 0.13, "fusion_gmacs": 0.001,
            "final": {"top1": top1, "top5": 99.0, "loss": 0.5} if status == "completed" else None,
            "best": {"top1": top1, "top5": 99.0, "epoch": 1}, "history": history if status == "completed" else [],
            "wall_time_s": 10.0 + seed, "run_dir": str(run_dir), "wandb": None}


# Known numbers: cross 80, 82, 84 (mean 82, std 2); all_attn 70, 71, 72 (mean 71, std 1); none 81, 84 (82.5, 2.121).
TOP1 = {"cross": [80.0, 82.0, 84.0], "all_attn": [70.0, 71.0, 72.0], "none": [81.0, 84.0]}


def write_sweep(root: Path) -> Path:
    sweep = root / "multirun" / "ablation"
    job = 0
    for fusion, scores in TOP1.items():
        for seed, top1 in enumerate(scores):
            run_dir = sweep / str(job)
            (run_dir / ".hydra").mkdir(parents=True)
            (run_dir / "results.json").write_text(json.dumps(results(fusion, seed, top1, run_dir,
                                                                     gmacs=0.02 if fusion == "all_attn" else 0.012)))
            job += 1
    return sweep


def add_bad_dirs(sweep: Path) -> dict:
    bad = {"corrupt": sweep / "90", "partial": sweep / "91", "foreign": sweep / "92", "no_results": sweep / "93",
           "failed": sweep / "94"}
    for folder in bad.values():
        (folder / ".hydra").mkdir(parents=True)
    (bad["corrupt"] / "results.json").write_text('{"schema": 1, "status": "comp')
    (bad["partial"] / "results.json").write_text(json.dumps(results("cross", 7, 0.0, bad["partial"], "running")))
    (bad["foreign"] / "results.json").write_text(json.dumps({"accuracy": 0.9}))
    (bad["failed"] / "results.json").write_text(json.dumps(results("cross", 8, 0.0, bad["failed"], "failed")))
    return bad


def test_table_gives_hand_computed_mean_std_n_and_paired_tests_against_cross(tmp_path):
    collection = load_runs([write_sweep(tmp_path)])
    factors = varying_factors(collection.runs, collection.candidate_factors)
    assert factors == ["fusion"]  # gmacs differ too, but they are results, not factors
    ablation = analyse(collection.runs, factors)
    table = ablation.table.set_index("fusion")
    assert table.loc["cross", "top1_mean"] == pytest.approx(82.0)
    assert table.loc["cross", "top1_std"] == pytest.approx(2.0)
    assert table.loc["all_attn", "top1_std"] == pytest.approx(1.0)
    assert table.loc["none", "top1_std"] == pytest.approx(3 / math.sqrt(2))
    assert table["n"].to_dict() == {"all_attn": 3, "cross": 3, "none": 2}
    assert table.loc["cross", "wall_time_s"] == pytest.approx(11.0)
    assert table.loc["cross", "images_per_s"] == pytest.approx(110.0)
    # cross is the reference (the paper's method), though none has the higher mean.
    assert ablation.reference == "cross" and table.loc["cross", "test"] == "none (reference)"
    mean_ci = stats.ttest_1samp([80, 82, 84], 0).confidence_interval()
    assert (table.loc["cross", "top1_ci_low"], table.loc["cross", "top1_ci_high"]) == pytest.approx(mean_ci)
    all_attn = stats.ttest_rel([70, 71, 72], [80, 82, 84])  # seed by seed
    assert table.loc["all_attn", "diff_vs_ref"] == pytest.approx(-11.0)
    assert table.loc["all_attn", "p_value"] == pytest.approx(all_attn.pvalue)
    assert (table.loc["all_attn", "diff_ci_low"], table.loc["all_attn", "diff_ci_high"]) == pytest.approx(
        all_attn.confidence_interval())
    none = stats.ttest_rel([81, 84], [80, 82])  # over the two seeds none shares with cross
    assert table.loc["none", "p_value"] == pytest.approx(none.pvalue)
    assert "2 shared seeds" in table.loc["none", "note"]
    holm = multipletests([all_attn.pvalue, none.pvalue], method="holm")[1]
    assert [table.loc["all_attn", "p_holm"], table.loc["none", "p_holm"]] == pytest.approx(holm)
    assert "paired t-test" in ablation.legend and "Holm" in ablation.legend


def test_single_seed_rows_without_predictions_are_named_and_left_untested(tmp_path):
    sweep = tmp_path / "single"
    for job, (fusion, top1) in enumerate((("cross", 80.0), ("all_attn", 70.0))):
        (sweep / str(job)).mkdir(parents=True)
        (sweep / str(job) / "results.json").write_text(json.dumps(results(fusion, 0, top1, sweep / str(job))))
    collection = load_runs([sweep])
    warnings = []
    ablation = analyse(collection.runs, ["fusion"], warn=warnings.append)
    table = ablation.table.set_index("fusion")
    assert math.isnan(table.loc["all_attn", "top1_std"]) and math.isnan(table.loc["all_attn", "p_value"])
    assert "val_predictions.npz is missing" in table.loc["all_attn", "note"]
    assert len(warnings) == 2 and all("compared by its seeds only" in line for line in warnings)
    assert {str(sweep / "0"), str(sweep / "1")} == {line.split(":")[0].removeprefix("run ") for line in warnings}
    assert "not computable" in ablation.seeds_needed


def test_swept_architecture_becomes_a_factor_once(tmp_path):
    sweep = tmp_path / "patches"
    for job, (patch, top1) in enumerate((((4, 8), 80.0), ((4, 8), 81.0), ((2, 8), 75.0), ((2, 8), 76.0))):
        run_dir = sweep / str(job)
        run_dir.mkdir(parents=True)
        (run_dir / "results.json").write_text(json.dumps(results("cross", job % 2, top1, run_dir, patch_size=patch)))
    collection = load_runs([sweep])
    factors = varying_factors(collection.runs, collection.candidate_factors)
    assert factors == ["patch_size"]  # model.patch_size splits no further: dropped
    table = analyse(collection.runs, factors).table.set_index("patch_size")
    assert table.loc["2/8", "top1_mean"] == pytest.approx(75.5)
    assert format_depth([[1, 4, 0]] * 3, 2) == "3x(1,4,2)"


def test_partial_corrupt_and_foreign_dirs_are_skipped_with_one_warning_each(tmp_path):
    sweep = write_sweep(tmp_path)
    bad = add_bad_dirs(sweep)
    warnings = []
    collection = load_runs([sweep], warn=warnings.append)
    assert len(collection.runs) == 8
    assert collection.failed["run_dir"].tolist() == [str(bad["failed"])]
    for name, why in (("corrupt", "corrupt:"), ("partial", "partial: status 'running'"),
                      ("foreign", "foreign:"), ("no_results", "partial: no results.json")):
        lines = [line for line in warnings if str(bad[name]) in line]
        assert len(lines) == 1 and why in lines[0], (name, warnings)
    assert len(warnings) == 4


def test_collate_cli_prints_table_writes_three_formats_and_plots(tmp_path, capsys):
    sweep = write_sweep(tmp_path)
    add_bad_dirs(sweep)
    assert collate_main([str(sweep), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr()
    assert "| cross" in printed.out and "82.00 ± 2.00" in printed.out and "71.00 ± 1.00" in printed.out
    assert "FLOPs (GMACs)" in printed.out and "params (M)" in printed.out and "time/run (s)" in printed.out
    for column in ("95% CI", "Δ vs cross [95% CI]", "p (Holm)", "[77.0, 87.0]", "-11.00 [-13.5, -8.5]", "0.005",
                   "worse"):
        assert column in printed.out, column
    assert "Reference: cross (the paper's method)" in printed.out and "Seeds needed: about" in printed.out
    assert "failed: " in printed.out and "boom" in printed.out
    assert printed.err.count("warning: skipped") == 4
    out = tmp_path / "out"
    assert "82.00 $\\pm$ 2.00" in (out / "ablation.tex").read_text()
    assert "\\begin{tabular}" in (out / "ablation.tex").read_text()
    assert "| all_attn" in (out / "ablation.md").read_text()
    assert "Reference: cross" in (out / "ablation.md").read_text()
    csv = pd.read_csv(out / "ablation.csv").set_index("fusion")
    assert csv.loc["cross", "top1_mean"] == pytest.approx(82.0) and csv.loc["none", "n"] == 2
    assert {"top1_mean", "top1_std", "n", "top1_ci_low", "top1_ci_high", "diff_vs_ref", "diff_ci_low",
            "diff_ci_high", "p_value", "p_holm"} <= set(csv.columns)
    for stem in ("top1_vs_gflops", "top1_vs_params", "val_curves"):
        assert (out / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
        assert (out / f"{stem}.png").stat().st_size > 5000
        assert "<svg" in (out / f"{stem}.svg").read_text()


def test_default_output_is_first_run_dir_analysis(tmp_path):
    sweep = write_sweep(tmp_path)
    assert collate_main([str(sweep), "--no-plots"]) == 0
    assert (sweep / "analysis" / "ablation.md").exists()


def test_no_runs_is_an_error_naming_where_it_looked(tmp_path):
    empty = tmp_path / "empty_sweep"
    empty.mkdir()
    with pytest.raises(NoRunsError, match="empty_sweep"):
        load_runs([empty])
    process = subprocess.run([sys.executable, "-m", "analysis.collate", str(empty)], cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
    assert process.returncode == 1 and "no runs found" in process.stderr and str(empty) in process.stderr
    missing = subprocess.run([sys.executable, "-m", "analysis.collate", str(tmp_path / "nope")], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_wandb_run_becomes_the_same_columns_as_a_results_file(tmp_path):
    run_dir = tmp_path / "0"
    from_file = load_runs_row(run_dir, results("all_attn", 1, 77.0, run_dir))
    fake = SimpleNamespace(
        id="abc", url="https://wandb.ai/e/p/runs/abc", state="finished",
        config={"model.name": "fusionvit_micro_32", "model.img_size": 32, "model.patch_size": [4, 8],
                "model.embed_dim": [48, 96], "model.depth": [[1, 2, 0], [1, 2, 0]], "fusion.name": "all_attn",
                "fusion.layers": 1, "seed": 1, "model": "fusionvit_micro_32", "fusion": "all_attn", "data": "digits",
                "logger": "wandb"},
        summary={"final/top1": 77.0, "final/top5": 99.0, "best/top1": 77.0, "params_m": 0.58, "gmacs": 0.012,
                 "_runtime": 11.0, "final/top1_branch0": 60.0, "final/top1_branch1": 70.0},
        history=lambda keys, pandas: [{"epoch": 0, "val/top1": 38.5}, {"epoch": 1, "val/top1": 77.0}])
    record = wandb_run_to_record(fake)  # the record a local run writes, then the same row builder
    assert set(record) == set(RunRecord.__annotations__) and set(record["model"]) == set(ModelSummary.__annotations__)
    from_wandb = wandb_run_to_row(fake)
    for column in ("status", "seed", "fusion", "model", "data", "patch_size", "embed_dim", "depth", "K", "top1",
                   "top5", "best_top1", "params_m", "gmacs", "wall_time_s"):
        assert from_wandb[column] == from_file[column], column
    assert [epoch["top1"] for epoch in from_wandb["history"]] == [38.5, 77.0]
    assert (from_wandb["top1_branch0"], from_wandb["top1_branch1"]) == (60.0, 70.0)


def load_runs_row(run_dir: Path, payload: dict) -> dict:
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps(payload))
    return load_runs([run_dir]).runs.iloc[0].to_dict()


def test_wandb_project_loading_skips_running_runs_and_lists_failed_ones():
    def fake_run(run_id, state, fusion, top1):
        return SimpleNamespace(id=run_id, url=f"https://wandb.ai/e/p/runs/{run_id}", state=state,
                               config={"fusion": fusion, "model": "fusionvit_micro_32", "seed": 0,
                                       "fusion.name": fusion},
                               summary={"final/top1": top1, "params_m": 0.5, "gmacs": 0.01, "_runtime": 3.0},
                               history=lambda keys, pandas: [])
    runs = [fake_run("a", "finished", "cross", 80.0), fake_run("b", "running", "cross", None),
            fake_run("c", "crashed", "none", None), fake_run("d", "finished", "none", 70.0)]
    api = SimpleNamespace(runs=lambda path, filters: runs if path == "e/p" else [])
    warnings = []
    collection = load_wandb_runs("e/p", api=api, warn=warnings.append)
    assert sorted(collection.runs["fusion"]) == ["cross", "none"]
    assert collection.failed["run_dir"].tolist() == ["https://wandb.ai/e/p/runs/c"]
    assert len(warnings) == 1 and "runs/b" in warnings[0]
    with pytest.raises(NoRunsError, match="e/empty"):
        load_wandb_runs("e/empty", api=api)


def test_the_same_sweep_collated_twice_gives_the_same_table_plus_one_warning_per_run(tmp_path, capsys):
    sweep = write_sweep(tmp_path)
    copy = tmp_path / "copy_of_sweep"
    shutil.copytree(sweep, copy)
    assert collate_main([str(sweep), "--out", str(tmp_path / "once"), "--no-plots"]) == 0
    capsys.readouterr()
    assert collate_main([str(sweep), str(copy), "--out", str(tmp_path / "twice"), "--no-plots"]) == 0
    err = capsys.readouterr().err
    once, twice = (pd.read_csv(tmp_path / name / "ablation.csv") for name in ("once", "twice"))
    pd.testing.assert_frame_equal(once, twice)
    assert twice["n"].sum() == 8
    duplicates = [line for line in err.splitlines() if "the same run" in line]
    assert len(duplicates) == 8 and "DIFFERENT" not in err
    assert all(str(copy) in line and str(sweep) in line for line in duplicates)


def test_a_duplicate_with_different_metrics_gets_a_louder_warning_and_the_first_copy_is_kept(tmp_path):
    run_a, run_b = tmp_path / "a" / "0", tmp_path / "b" / "0"
    for run_dir, top1 in ((run_a, 80.0), (run_b, 81.0)):
        run_dir.mkdir(parents=True)
        (run_dir / "results.json").write_text(json.dumps(results("cross", 0, top1, run_dir)))
    warnings = []
    runs = load_runs([tmp_path], warn=warnings.append).runs
    assert runs["run_dir"].tolist() == [str(run_a)] and runs["top1"].tolist() == [80.0]
    assert len(warnings) == 1 and "DIFFERENT metrics" in warnings[0] and "80, 81" in warnings[0]
    assert str(run_a) in warnings[0] and str(run_b) in warnings[0]


def test_wandb_rows_without_a_config_hash_are_never_merged_and_with_one_are_counted_once():
    def fake_run(run_id, summary):
        return SimpleNamespace(id=run_id, url=f"https://wandb.ai/e/p/runs/{run_id}", state="finished",
                               config={"fusion": "cross", "seed": 0}, summary={"final/top1": 80.0, **summary},
                               history=lambda keys, pandas: [])
    api = SimpleNamespace(runs=lambda path, filters: [fake_run("a", {}), fake_run("b", {})])
    warnings = []
    assert len(load_wandb_runs("e/p", api=api, warn=warnings.append).runs) == 2 and not warnings
    hashed = SimpleNamespace(runs=lambda path, filters: [fake_run(name, {"config_hash": "h"}) for name in "ab"])
    assert len(load_wandb_runs("e/p", api=hashed, warn=warnings.append).runs) == 1
    assert len(warnings) == 1 and "runs/a" in warnings[0] and "runs/b" in warnings[0]


def with_branches(payload: dict, top1_branch) -> dict:
    payload["final"]["top1_branch"] = top1_branch
    payload["best"]["top1_branch"] = top1_branch
    return payload


@pytest.mark.parametrize("branches, titles", [([60.0, 70.0], ["S-branch top-1", "L-branch top-1"]),
                                              ([50.0, 60.0, 70.0], ["branch 0 top-1", "branch 2 top-1"])])
def test_per_branch_top1_becomes_columns_means_and_titles(tmp_path, branches, titles):
    sweep = tmp_path / "branches"
    for job, (fusion, seed) in enumerate((("cross", 0), ("cross", 1), ("none", 0))):
        run_dir = sweep / str(job)
        run_dir.mkdir(parents=True)
        shifted = [value + seed for value in branches]  # seed 1 is one point up: cross means are +0.5
        (run_dir / "results.json").write_text(json.dumps(with_branches(results(fusion, seed, 80.0, run_dir), shifted)))
    runs = load_runs([sweep]).runs
    assert runs.loc[0, "top1_branch1"] == branches[1]
    ablation = analyse(runs, ["fusion"])
    table = ablation.table.set_index("fusion")
    assert table.loc["cross", "top1_branch0_mean"] == pytest.approx(branches[0] + 0.5)
    shown = ablation_table(ablation)
    for title in titles:
        assert title in shown.columns


def test_older_results_without_branch_accuracy_load_and_show_no_branch_columns(tmp_path):
    collection = load_runs([write_sweep(tmp_path)])
    assert not [column for column in collection.runs.columns if column.startswith("top1_branch")]
    shown = ablation_table(analyse(collection.runs, ["fusion"]))
    assert not [title for title in shown.columns if "branch" in title]


def test_collate_with_an_unknown_ref_exits_2_listing_the_rows_and_writes_nothing(tmp_path, capsys):
    sweep = write_sweep(tmp_path)
    assert collate_main([str(sweep), "--ref", "crossvit", "--out", str(tmp_path / "out")]) == 2
    assert "the rows are: all_attn; cross; none" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert collate_main([str(sweep), "--ref", "none", "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    assert "Δ vs none" in capsys.readouterr().out


def test_plot_error_bars_are_the_95_percent_t_interval_not_the_std(tmp_path):

    collection = load_runs([write_sweep(tmp_path)])
    cross = analyse(collection.runs, ["fusion"]).table.set_index("fusion").loc["cross"]
    half_width = stats.t.ppf(0.975, 2) * 2.0 / math.sqrt(3)  # t(0.975, n-1) * std / sqrt(n), by hand
    error = interval_error(cross["top1_ci_low"], cross["top1_mean"], cross["top1_ci_high"])
    assert error.ravel() == pytest.approx([half_width, half_width])


def test_collate_names_each_kind_of_pooled_provenance_and_whether_seeds_keep_to_one():
    """The shipped fusion ablation ran seeds 0-5 and 6-12 on two machines with two torch versions at two commits:
    one warning line per kind, each saying that every seed stayed on one value; runs of one seed split over two
    commits get the plain warning, and committed runs pooled with uncommitted ones are named."""
    warnings = []
    load_runs([ROOT / "results" / "cpu" / "fusion"], warn=warnings.append)
    pooled = {kind: next(w for w in warnings if f"different {kind}:" in w) for kind in
              ("devices", "torch versions", "commits")}
    assert len(warnings) == 3
    assert "2.11.0+cu130 (42 runs), 2.14.1+cu130 (36 runs); each seed's runs share one torch version" in pooled[
        "torch versions"]
    assert "0d277cdb (42 runs), f2538d60 (36 runs); each seed's runs share one commit" in pooled["commits"]
    split = pd.DataFrame({"seed": [0, 0, 1, 1], "git_sha": ["a" * 40, "b" * 40, "a" * 40, "b" * 40],
                          "git_dirty": [True] * 4})
    warnings.clear()
    warn_mixed_provenance(split, warnings.append)
    assert len(warnings) == 1  # every run uncommitted: no code state pooled
    assert "different commits: aaaaaaaa (2 runs), bbbbbbbb (2 runs); results can differ" in warnings[0]
    warnings.clear()
    warn_mixed_provenance(split.assign(git_sha="a" * 40, git_dirty=[True, True, False, False]), warnings.append)
    assert len(warnings) == 1 and ("different code states: committed (2 runs), uncommitted changes (2 runs); each "
                                   "seed's runs share one code state") in warnings[0]
