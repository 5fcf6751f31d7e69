"""Collation of a real sweep: two fusions x two seeds through ``python -m src.run -m`` (the fusion ablation's
CPU preset, cut to one tiny epoch), then ``python -m analysis.collate``; mean/std checked against the
results files by values computed here by hand."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis import aggregate, load_runs, varying_factors

ROOT = Path(__file__).resolve().parents[1]
TINY = ["train.epochs=1", "data.limit_train=96", "data.limit_val=64", "train.batch_size=32", "logger=none",
        "train.threads=1"]  # one thread: on the shared 2-core CPU, two threads run ~10x slower


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    sweep_dir = tmp_path_factory.mktemp("sweep") / "fusion_ablation_cpu"
    env = dict(os.environ, WANDB_SILENT="true")
    process = subprocess.run([sys.executable, "-m", "src.run", "-m", "+experiment=fusion_ablation_cpu",
                              "fusion=cross,all_attn", "seed=0,1", *TINY, f"hydra.sweep.dir={sweep_dir}"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert process.returncode == 0, process.stderr[-3000:]
    return sweep_dir


def hand_mean_std(values):
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((value - mean) ** 2 for value in values) / (len(values) - 1))


def test_real_two_fusion_two_seed_sweep_aggregates_to_hand_computed_values(sweep):
    by_fusion = {}
    for results_file in sorted(sweep.glob("*/results.json")):
        results = json.loads(results_file.read_text())
        assert results["status"] == "completed"
        by_fusion.setdefault(results["choices"]["fusion"], []).append(results["final"]["top1"])
    assert {fusion: len(scores) for fusion, scores in by_fusion.items()} == {"cross": 2, "all_attn": 2}

    collection = load_runs([sweep])
    factors = varying_factors(collection.runs, collection.candidate_factors)
    assert factors == ["fusion"]
    table = aggregate(collection.runs, factors).set_index("fusion")
    for fusion, scores in by_fusion.items():
        mean, std = hand_mean_std(scores)
        assert table.loc[fusion, "top1_mean"] == pytest.approx(mean)
        assert table.loc[fusion, "top1_std"] == pytest.approx(std)
        assert table.loc[fusion, "n"] == 2
    assert table.loc["all_attn", "gmacs"] > table.loc["cross", "gmacs"]  # all-attention costs more

    process = subprocess.run([sys.executable, "-m", "analysis.collate", str(sweep)], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr
    mean, std = hand_mean_std(by_fusion["cross"])
    assert f"{mean:.2f} ± {std:.2f}" in process.stdout
    assert "| fusion" in process.stdout and "time/run (s)" in process.stdout
    csv = pd.read_csv(sweep / "analysis" / "ablation.csv").set_index("fusion")
    assert csv.loc["cross", "top1_mean"] == pytest.approx(mean)
    for stem in ("top1_vs_gflops", "top1_vs_params", "val_curves"):
        assert (sweep / "analysis" / f"{stem}.png").stat().st_size > 5000
