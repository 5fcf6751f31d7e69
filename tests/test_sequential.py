"""Seeds added validly (analysis/stats/sequential.py, analysis/stats/verdict.py, python -m analysis.sequential).

The boundaries are pinned against the published ones; the error rates by simulation: under the null, testing at
every look of the design keeps the false-positive rate at alpha, testing naively at each look does not; TOST at
the margin declares equivalence at most alpha of the time; and with one look the procedure is Holm's."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from analysis.runs.local import load_runs
from analysis.stats.ablation import analyse
from analysis.stats.compare import paired_t
from analysis.stats.sequential import Design, DesignError, boundaries, graphical_holm, nominal_levels
from analysis.stats.verdict import BETTER, EQUIVALENT, INCONCLUSIVE, WORSE, RowTests, paired_tost_p, row_tests, verdicts
from tests.conftest import ROOT

ALPHA = 0.05
LOOKS = [4, 7, 10, 13, 16]  # five looks, the last at the design's budget
REPS = 6000
TOLERANCE = 3 * np.sqrt(ALPHA * (1 - ALPHA) / REPS)  # three simulation SEs


def test_boundaries_are_the_published_ones():
    """Jennison & Turnbull (2000) / gsDesign: five equally spaced looks, one-sided 0.025."""
    fractions = [0.2, 0.4, 0.6, 0.8, 1.0]
    assert boundaries(fractions, 0.025, "obrien_fleming") == pytest.approx([4.877, 3.357, 2.680, 2.290, 2.031],
                                                                           abs=2e-3)
    assert boundaries(fractions, 0.025, "pocock") == pytest.approx([2.438, 2.427, 2.410, 2.397, 2.386], abs=3e-3)
    assert boundaries([1.0], 0.025) == pytest.approx([stats.norm.isf(0.025)])


def paired_p_values(differences: np.ndarray, looks) -> np.ndarray:
    """[reps, looks] two-sided paired t p-values on the first n of each rep's differences."""
    found = []
    for n in looks:
        sample = differences[:, :n]
        t = sample.mean(axis=1) / (sample.std(axis=1, ddof=1) / np.sqrt(n))
        found.append(2 * stats.t.sf(np.abs(t), df=n - 1))
    return np.array(found).T


def test_the_design_keeps_the_false_positive_rate_at_alpha_and_naive_looks_do_not():
    differences = np.random.default_rng(0).normal(0.0, 1.0, size=(REPS, LOOKS[-1]))
    p = paired_p_values(differences, LOOKS)
    for spending in ("pocock", "obrien_fleming"):
        levels = 2 * nominal_levels(LOOKS, LOOKS[-1], ALPHA / 2, spending)
        sequential = np.mean((p < levels).any(axis=1))
        assert ALPHA - 2 * TOLERANCE < sequential < ALPHA + TOLERANCE, spending
    naive = np.mean((p < ALPHA).any(axis=1))
    assert naive > ALPHA + 4 * TOLERANCE  # about 0.12 with five looks
    assert np.mean(p[:, -1] < ALPHA) == pytest.approx(ALPHA, abs=TOLERANCE)  # one look: the plain test is right


def test_holm_across_rows_and_looks_keeps_the_familywise_rate():
    rng = np.random.default_rng(1)
    rows = 3
    p = [paired_p_values(rng.normal(0.0, 1.0, size=(1500, LOOKS[-1])), LOOKS) for _ in range(rows)]

    def levels(level):
        return 2 * nominal_levels(LOOKS, LOOKS[-1], level / 2)

    rejected = [bool(graphical_holm({row: p[row][rep] for row in range(rows)}, levels, ALPHA))
                for rep in range(1500)]
    assert np.mean(rejected) < ALPHA + 3 * np.sqrt(ALPHA * (1 - ALPHA) / 1500)


def test_one_look_is_holm():
    rng = np.random.default_rng(2)
    for _ in range(50):
        p_values = rng.uniform(0, 0.08, size=4)
        found = graphical_holm({row: [p] for row, p in enumerate(p_values)}, lambda level: np.array([level]), ALPHA)
        assert set(found) == set(np.flatnonzero(multipletests(p_values, alpha=ALPHA, method="holm")[0]))


def test_tost_at_the_margin_declares_equivalence_at_most_alpha_of_the_time():
    margin, n = 0.5, 10
    rng = np.random.default_rng(3)
    reference = np.zeros(n)
    equivalent = [paired_tost_p(reference, rng.normal(margin, 0.4, size=n), margin) < ALPHA for _ in range(3000)]
    assert np.mean(equivalent) < ALPHA + 3 * np.sqrt(ALPHA * (1 - ALPHA) / 3000)
    assert paired_tost_p(reference, rng.normal(0.0, 0.1, size=n), margin) < 0.001  # tight and centred: equivalent


def by_seed(values):
    return pd.Series(values, index=range(len(values)), dtype=float)


def test_four_verdicts():
    rng = np.random.default_rng(4)
    reference = by_seed(rng.normal(90, 1, size=12))
    noise = rng.normal(0, 0.1, size=12)
    rows = {"up": reference + 2 + noise, "down": reference - 2 + noise, "same": reference + noise,
            "unsure": reference + rng.normal(0.5, 2.0, size=12)}
    design = Design(max_seeds=12)
    looks = design.looks_at(12)
    tests = {name: row_tests(reference, row, paired_t(reference, row), looks, 0.5) for name, row in rows.items()}
    found = {name: verdict.verdict for name, verdict in verdicts(tests, looks, design).items()}
    assert found == {"up": BETTER, "down": WORSE, "same": EQUIVALENT, "unsure": INCONCLUSIVE}
    without_margin = {name: RowTests(t.p_diff, [float("nan")] * len(t.p_diff), t.diff, t.seeds)
                      for name, t in tests.items()}
    assert verdicts(without_margin, looks, design)["same"].verdict == INCONCLUSIVE  # never "no effect" unshown


def test_a_row_resolved_at_an_early_look_says_so():
    rng = np.random.default_rng(5)
    reference = by_seed(rng.normal(90, 1, size=12))
    row = reference + 3 + rng.normal(0, 0.2, size=12)
    design = Design(max_seeds=12, looks=(4, 8), block=4)
    looks = design.looks_at(12)
    assert looks == [4, 8, 12]
    verdict = verdicts({"row": row_tests(reference, row, paired_t(reference, row), looks, None)}, looks, design)
    assert verdict["row"].verdict == BETTER and verdict["row"].resolved_at == 4


def test_design_schedule_and_bad_designs():
    design = Design(max_seeds=25, looks=(6, 13), block=2)
    assert design.schedule() == [6, 13, 15, 17, 19, 21, 23, 25]
    assert design.looks_at(15) == [6, 13, 15] and design.looks_at(14) == [6, 13, 14]
    assert design.next_look(13) == 15 and design.next_look(0) == 6
    for bad, named in (({"max_seeds": 1}, "max_seeds"), ({"max_seeds": 10, "looks": (8, 4)}, "looks"),
                       ({"max_seeds": 10, "spending": "linear"}, "spending"), ({"max_seeds": 10, "block": 0}, "block")):
        with pytest.raises(DesignError, match=named):
            Design(**bad)


def test_shipped_fusion_ablation_under_its_design():
    """results/cpu/fusion was looked at after 6 and 13 seeds; under its declared design the two rows at Holm p 0.02
    are not resolved at 13 seeds, where one look at alpha called them resolved."""
    runs = load_runs([ROOT / "results" / "cpu" / "fusion"], warn=lambda message: None).runs
    design = Design(max_seeds=25, looks=(6, 13))
    table = analyse(runs, ["fusion"], margin=0.5, design=design).table.set_index("fusion")
    assert table.loc[["all_attn_residual", "cls_token"], "verdict"].tolist() == [INCONCLUSIVE] * 2
    assert table.loc["gated_cross", "verdict"] == BETTER and table.loc["none", "verdict"] == BETTER
    one_look = analyse(runs, ["fusion"], margin=0.5).table.set_index("fusion")
    assert set(one_look.loc[one_look["verdict"] != "reference", "verdict"]) == {BETTER}


@pytest.mark.slow
def test_the_command_runs_blocks_until_the_budget_and_resumes(tmp_path):
    """Two fusions on the smoke config, at most 4 seeds in blocks of 2: one block, stop (--max-blocks 1), then
    the same command goes on to the budget and writes the table with its verdicts."""
    sweep = tmp_path / "sweep"
    command = [sys.executable, "-m", "analysis.sequential", "--preset", "smoke", "--max-seeds", "4", "--block", "2",
               "--margin", "0.5", "--ref", "cross", "--sweep-dir", str(sweep), "fusion=none,cross",
               "hydra/launcher=basic", "logger=none"]
    first = subprocess.run([*command, "--max-blocks", "1"], capture_output=True, text=True, cwd=ROOT)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "next block: seeds 2, 3" in first.stdout
    assert len(list(sweep.rglob("results.json"))) == 4
    second = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "look at 4 of at most 4 seeds" in second.stdout
    assert len(list(sweep.rglob("results.json"))) == 8
    table = pd.read_csv(sweep / "analysis" / "ablation.csv").set_index("fusion")
    assert table.loc["cross", "verdict"] == "reference" and table.loc["none", "n"] == 4
    assert table.loc["none", "verdict"] in (BETTER, WORSE, EQUIVALENT, INCONCLUSIVE)
    assert json.loads(next(sweep.rglob("results.json")).read_text())["seed"] in range(4)


def test_the_command_refuses_a_seed_override_and_no_design(tmp_path):
    base = [sys.executable, "-m", "analysis.sequential", "--preset", "smoke", "--sweep-dir", str(tmp_path)]
    seeded = subprocess.run([*base, "--max-seeds", "4", "seed=1,2"], capture_output=True, text=True, cwd=ROOT)
    assert seeded.returncode == 2 and "the design picks the seeds" in seeded.stderr
    nothing = subprocess.run(base, capture_output=True, text=True, cwd=ROOT)
    assert nothing.returncode == 2 and "no sequential design" in nothing.stderr


def test_the_command_refuses_to_join_seeds_of_another_job_before_running_anything(tmp_path):
    """make run ARGS="train.epochs=5" would pool 5-epoch seeds with the shipped 12-epoch ones: refused up front."""
    out = subprocess.run([sys.executable, "-m", "analysis.sequential", "--ablation", "fusion", "--preset", "make_run",
                          "--with", "results/cpu/fusion", "--sweep-dir", str(tmp_path / "sweep"), "train.epochs=5"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "train.epochs 12 there, 5 here" in out.stderr
    assert not (tmp_path / "sweep").exists()
    planned = subprocess.run([sys.executable, "-m", "analysis.sequential", "--ablation", "fusion", "--preset",
                              "make_run", "--with", "results/cpu/fusion", "--sweep-dir", str(tmp_path / "sweep"),
                              "--dry-run"], capture_output=True, text=True, cwd=ROOT)
    assert planned.returncode == 0 and "look at 13 of at most 25 seeds" in planned.stdout
    assert "next block: seeds 13, 14 of +experiment=make_run" in planned.stdout
