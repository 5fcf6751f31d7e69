"""The readings (each notebook's section 5 and the README's results block) are templates rendered from the table
they describe: every shipped reading renders, no template hides a number of ours as a literal, each rendered
number is the table's, and the stored notebooks and the README say what the shipped results give today."""
import json
import math
import re
from dataclasses import replace

import nbformat
import pandas as pd
import pytest

from analysis.paper import readings
from analysis.paper.ablations import AblationSpec, specs
from analysis.paper.build_notebooks import path_of, reading
from analysis.paper.readings import (
    LIMITS,
    PLACEHOLDER,
    ReadingError,
    collate_shipped,
    render,
    render_limits,
    render_reading,
)
from analysis.paper.readme import HEADER, READING
from analysis.paper.readme import main as readme_main
from analysis.stats.ablation import Ablation

from conftest import ROOT

# Decimals and percentages a template may hold as literals: facts of the architectures or the paper's setting,
# never a measurement of ours. Each needs a reason; integers (patch sizes, block counts, px) need none.
LITERALS_ALLOWED = {
    "patch_size": {"2.25": "the paper's S tokens from 12 to 8 px patches at 240 px: (240/8)^2 / (240/12)^2"},
    "limits": {"1.28": "ImageNet-1k's training set, in millions of images"},
}
LITERAL_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?%|(?<![\w.])\d+\.\d+")


@pytest.fixture(scope="module")
def shipped():
    return {name: collate_shipped(spec) for name, spec in specs().items()}


def templates():
    found = {name: spec.reading for name, spec in specs().items()}
    return {**found, "limits": LIMITS, "readme": HEADER + " " + READING}


@pytest.mark.parametrize("name", sorted(templates()))
def test_a_reading_template_holds_no_literal_decimal_or_percentage_but_placeholders(name):
    literals = LITERAL_NUMBER.findall(PLACEHOLDER.sub("", templates()[name]))
    allowed = LITERALS_ALLOWED.get(name, {})
    assert [literal for literal in literals if literal not in allowed] == [], (
        f"{name}: make these placeholders (analysis/paper/readings.py), or allow them in LITERALS_ALLOWED with why")


def test_lowest_names_a_rows_lowest_seed_as_its_run_records_give_it(shipped):
    done, spec = shipped["fusion_tuned"], specs()["fusion_tuned"]
    for label in ("all_attn", "cross"):
        finals = {}
        for path in (ROOT / "results" / "cpu" / "fusion_tuned").glob(f"+tuned_fusion={label},seed=*/results.json"):
            record = json.loads(path.read_text())
            finals[record["seed"]] = record["final"]["top1"]
        seed = min(finals, key=finals.get)
        assert render(f"{{lowest:{label}}}", spec, done.result, done.runs) == f"{finals[seed]:.2f}% (seed {seed})"
    with pytest.raises(ReadingError, match=r"\{lowest:cross\}: needs the table's runs"):
        render("{lowest:cross}", spec, done.result)


def test_every_shipped_reading_and_its_limits_render_from_the_results(shipped):
    for name, spec in specs().items():
        text = render_reading(spec, shipped[name].result, shipped[name].runs) + render_limits(
            spec, shipped[name].result, shipped[name].runs)
        assert not PLACEHOLDER.search(text) and "n/a" not in text, name


def test_rendered_numbers_are_the_tables_formatted_as_it_prints_them(shipped):
    fusion = specs()["fusion"]
    result, runs = shipped["fusion"].result, shipped["fusion"].runs
    table = result.table.set_index("label")
    for label, row in table.iterrows():
        one = lambda template: render(template, fusion, result, runs)  # noqa: E731
        assert one(f"{{top1:{label}}}") == f"{row['top1_mean']:.2f}%"
        assert one(f"{{std:{label}}}") == f"{row['top1_std']:.2f}"
        assert one(f"{{flops:{label}}}") == f"{row['gmacs'] / table.loc['cross', 'gmacs']:.2f}x"
        assert one(f"{{s_head:{label}}} {{l_head:{label}}}") == (
            f"{row['top1_branch0_mean']:.2f}% {row['top1_branch1_mean']:.2f}%")
        if row["is_ref"]:
            assert one(f"{{verdict:{label}}}") == "the reference"
            continue
        assert one(f"{{diff:{label}}}") == f"{row['diff_vs_ref']:+.2f}"
        assert one(f"{{ci:{label}}}") == f"[{row['diff_ci_low']:.1f}, {row['diff_ci_high']:.1f}]"
        assert one(f"{{mdd:{label}}}") == f"{row['mdd']:.2f}"
        verdict = one(f"{{verdict:{label}}}")
        assert verdict.startswith({"better": "better than `cross`", "worse": "worse than `cross`",
                                   "equivalent": "equivalent to `cross`",
                                   "inconclusive": "inconclusive against `cross`"}[row["verdict"]]), verdict
    # against another reference the table is analysed again: the paired difference changes sign
    assert render("{diff:cross@none}", fusion, result, runs) == f"{-table.loc['none', 'diff_vs_ref']:+.2f}"
    assert render("{paper_diff:cls_token} {paper_flops:all_attn_residual}", fusion, result) == "-0.7 1.36x"
    stds = result.table["top1_std"]
    assert render("{std_range}", fusion, result) == f"{stds.min():.2f} to {stds.max():.2f}"


def hand_made() -> tuple:
    """A table of five rows against ``a``, one per verdict, with the columns ``analyse`` gives."""
    nan = math.nan
    table = pd.DataFrame({
        "label": ["a", "b", "c", "d", "e"], "flag": ["", "", "", "", "seeds disagree"],
        "top1_mean": [90.0, 92.0, 90.1, 89.5, 80.0], "top1_std": [0.5, 0.4, 0.3, 1.5, 6.0], "n": [5] * 5,
        "diff_vs_ref": [0.0, 2.0, 0.1, -0.5, nan], "diff_ci_low": [nan, 1.2, -0.2, -2.25, nan],
        "diff_ci_high": [nan, 2.8, 0.4, 1.25, nan], "p_holm": [nan, 0.004, 0.6, 0.5, nan],
        "mdd": [nan, 0.6, 0.4, 2.5, nan], "verdict": ["reference", "better", "equivalent", "inconclusive",
                                                      "not compared"],
        "margin": [0.5] * 5, "p_equiv": [nan, 0.9, 0.01, 0.4, nan], "resolved_at": [nan, 4.0, 5.0, nan, nan],
        "is_ref": [True, False, False, False, False], "note": [""] * 5, "gmacs": [2.0, 3.0, 2.0, 1.0, 2.0],
        "params_m": [1.0] * 5, "epochs": [12] * 5})
    result = Ablation(table=table, factors=["fusion"], reference="a", legend="", seeds_needed="", power_line="")
    spec = AblationSpec(name="hand_made", title="", preset="", imagenet_preset="", paper_table="6",
                        paper_reference="Cross-Attention", question="", proxy="", reading="", minutes=1,
                        rows={"a": "Cross-Attention", "b": "Class Token", "c": "All-Attention", "d": "None",
                              "e": None},
                        paper_rows=["Cross-Attention", "Class Token", "All-Attention", "None"])
    return spec, result


def test_verdict_words_come_from_the_verdict_column_and_no_effect_only_from_equivalence():
    spec, result = hand_made()
    said = {label: render(f"{{verdict:{label}}}", spec, result) for label in "abcde"}
    assert said == {
        "a": "the reference", "b": "better than `a` at 4 seeds (+2.00 [1.2, 2.8])",
        "c": "equivalent to `a` within ±0.5 points at 5 seeds (+0.10 [-0.2, 0.4])",
        "d": "inconclusive against `a` at 5 seeds (-0.50 [-2.2, 1.2]): the data rule out a gain above 1.2 and a "
             "loss above 2.2 points (95% interval), not every difference",
        "e": "not compared (seeds disagree)"}
    assert render("{verdicts}", spec, result) == (
        "`b` is better than `a`; `c` is equivalent to `a`; `d` is inconclusive; `e` is not compared")
    assert render("{rank:b} / {rank:c} / {rank:d} / {rank:e}", spec, result) == (
        "the highest of 4 rows / the 2nd highest of 4 rows / the lowest of 4 rows / flagged (seeds disagree)")


def test_reach_sets_the_papers_gap_against_each_rows_detectable_difference():
    spec, result = hand_made()  # paper gaps to Cross-Attention (81.0): Class Token 0.7, All-Attention 1.0, None 0.8
    assert render("{reach:b}", spec, result) == "the paper's gap of 0.7 point is within this table's reach of 0.60"
    assert render("{reach:d}", spec, result) == "the paper's gap of 0.8 point is below this table's reach of 2.50"
    assert render("{reach}", spec, result) == (
        "a gap the size of the paper's is within this table's reach for `b` (paper 0.7, reach 0.60) and `c` (paper "
        "1.0, reach 0.40); below this table's reach for `d` (paper 0.8, reach 2.50)")
    assert render("{paper:b} {paper_diff:b} {paper_diff:b@d} {paper_s_head:d}", spec, result) == "80.3% -0.7 +0.1 0.1%"


def test_a_placeholder_that_cannot_be_rendered_names_itself_the_ablation_and_the_fix():
    spec, result = hand_made()
    with pytest.raises(ReadingError, match=r"ablations.yaml, hand_made: \{bogus:a\}: unknown kind 'bogus' with a "
                                           r"row; the kinds with a row are top1, std, diff"):
        render("{bogus:a}", spec, result)
    with pytest.raises(ReadingError, match=r"\{top1:z\}: no row 'z' in the table \(its rows: a, b, c, d, e\)"):
        render("{top1:z}", spec, result)
    with pytest.raises(ReadingError, match=r"\{paper:e\}: our row 'e' stands for no paper row"):
        render("{paper:e}", spec, result)
    with pytest.raises(ReadingError, match=r"\{diff:b@c\}: needs the table's runs: pass runs="):
        render("{diff:b@c}", spec, result)
    with pytest.raises(ReadingError, match=r"\{order:a\}: unknown kind 'order' with a row"):
        render("{order:a}", spec, result)


def test_the_validation_sentence_counts_digits_as_the_unit_or_falls_back_to_the_binomial_se(shipped, monkeypatch):
    fusion = specs()["fusion"]
    result, runs = shipped["fusion"].result, shipped["fusion"].runs
    assert re.fullmatch(r"the validation set has 360 independent units \(digits\) in 10,080 images; one evaluation's "
                        r"SE is about \d\.\d\d point \(0\.2\d as if images were independent\)",
                        render("{validation}", fusion, result, runs))
    monkeypatch.setattr(readings, "table_design_effect", lambda run_dirs: None)
    assert re.fullmatch(r"the validation set has 10,080 images; one evaluation's binomial SE is about 0\.2\d point",
                        render("{validation}", fusion, result, runs))


def test_a_stale_readme_block_fails_the_check(tmp_path, capsys):
    stale = tmp_path / "README.md"
    stale.write_text((ROOT / "README.md").read_text().replace("How to read it:", "How to read it (edited):"))
    assert readme_main(["--check", "--readme", str(stale)]) == 1
    assert "run python -m analysis.paper.readme" in capsys.readouterr().err
    stale.write_text("no markers\n")
    assert readme_main(["--check", "--readme", str(stale)]) == 2


def test_readme_results_block_is_what_the_shipped_fusion_ablation_gives_today():
    assert readme_main(["--check"]) == 0, "README.md's results block is stale: python -m analysis.paper.readme"


def test_drift_guard_stored_notebook_readings_are_what_the_shipped_results_render_today(shipped):
    """Fails until the notebooks are rebuilt after a reading, the renderer or the results change (the drift
    guard): python -m analysis.paper.build_notebooks NAME writes them."""
    stale = [spec.notebook for name, spec in specs().items()
             if nbformat.read(path_of(spec), as_version=4).cells[-1].source != reading(spec, shipped[name])]
    assert stale == [], f"stale readings in {', '.join(stale)}: python -m analysis.paper.build_notebooks " + " ".join(
        name for name, spec in specs().items() if spec.notebook in stale)


def test_build_notebooks_renders_the_reading_of_a_changed_template(shipped):
    spec = replace(specs()["class_token"], reading="Without CLS tokens: {top1:False}.")
    assert reading(spec, shipped["class_token"]).startswith(
        f"## 5. Reading\n\nWithout CLS tokens: {shipped['class_token'].result.table.iloc[0]['top1_mean']:.2f}%.\n\n"
        "**What the proxy can and cannot say.**")
