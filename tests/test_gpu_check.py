"""The one-shot GPU check (``python -m src.bench.gpu_check``): it refuses to pretend on a machine without CUDA, and
its steps (the bench with models, throughput and loader, then a short src.run on the bench's JPEGs through the
image-folder pipeline) run end to end at toy sizes on the CPU (``--device cpu --tiny``), writing one JSON and one
Markdown that agree. The GPU itself is never needed here."""
import json

import pytest
import torch

from src.bench import gpu_check


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the refusal is for one without")
def test_without_cuda_the_check_refuses_and_says_how_to_run_its_steps_on_the_cpu(tmp_path, capsys):
    assert gpu_check.main(["--out", str(tmp_path)]) == 2
    assert "no CUDA device here: this check needs a GPU" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written, nothing run


@pytest.mark.slow  # two subprocesses: the bench (about 7 s) and a one-epoch run (about 7 s)
def test_the_checks_steps_run_at_toy_sizes_and_the_report_holds_their_figures(tmp_path):
    assert gpu_check.main(["--device", "cpu", "--tiny", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [step["step"] for step in report["steps"]] == ["bench", "run"] and report["wall_s"] < gpu_check.BUDGET_S
    assert all(step["rc"] == 0 for step in report["steps"])
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert {"models", "throughput", "loader"} <= set(bench)
    figures = report["steps"][1]["figures"]
    assert figures["status"] == "completed" and figures["device"]  # provenance: the CPU or GPU name
    assert 0 <= figures["data_wait_frac"] <= 1 and figures["images_per_s"] > 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["config"]["data"]["name"] == "imagefolder"
    assert results["config"]["data"]["root"] == str(tmp_path / "jpegs")
    md = (tmp_path / "gpu_check.md").read_text()
    assert f"| run | 0 | {report['steps'][1]['wall_s']:.0f} | {figures['top1']:.3g} | " in md
    assert "## fusionvit_micro_32 vs timm crossvit" in md  # the bench's own report follows the table
