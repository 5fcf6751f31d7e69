"""The benchmark runs end to end on a tiny configuration; checks the report's content, not the speed."""
import json
import math
import operator
import re
import statistics

import pytest
import timm
import torch

from src.bench import ceiling, model_matrix, speed, throughput
from src.bench.__main__ import check_targets, main, to_markdown
from src.bench.sweep import epoch_numbers, summary
from src.models import count_flops

BATCH = 4


def markdown_rows(md: str, heading: str) -> list:
    """The cells of each data row of the table under ``## heading`` in the benchmark's Markdown."""
    section = md.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")][1:]  # drop the header row
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


@pytest.mark.slow
def test_bench_tiny_end_to_end(tmp_path):
    main(["--variant", "fusionvit_micro_32", "--batch", str(BATCH), "--repeats", "3", "--warmup", "1",
          "--fusion-base-img", "24", "--overhead-train", "32", "--matmul-n", "256", "--out", str(tmp_path),
          "--name", "tiny", "--threads", "1", "--profile", "on", "--startup-repeats", "1",
          "--parts", "models,fusion,overhead,startup"])
    r = json.loads((tmp_path / "tiny.json").read_text())
    md = (tmp_path / "tiny.md").read_text()
    assert r["matmul_gflops"] > 0 and r["device"] == "cpu"

    (m,) = r["models"]
    assert m["variant"] == "fusionvit_micro_32" and m["batch"] == BATCH and m["compile"] is False
    ours_model = timm.create_model("fusionvit_micro_32", fusion="cross", num_classes=1000)
    assert abs(m["gmacs_per_image"] - count_flops(ours_model, (3, 32, 32))) < 1e-9
    assert m["peak_memory_mb"] > 0
    for mode in ("train", "infer"):
        s = m[mode]
        ours_times, timm_times = s["times_s"]["ours"], s["times_s"]["timm"]
        assert len(ours_times) == len(timm_times) == 3 and min(ours_times + timm_times) > 0
        # img/s is the batch over the median of the recorded step times; the ratio is a speed ratio (ours/timm),
        # so the inverse ratio of the median times, and it lies in the spread of the per-repeat ratios.
        assert math.isclose(s["ours_img_s"], BATCH / statistics.median(ours_times), rel_tol=1e-9)
        assert math.isclose(s["ratio"], statistics.median(timm_times) / statistics.median(ours_times), rel_tol=1e-9)
        per_repeat = sorted(t / o for o, t in zip(ours_times, timm_times))
        low, high = s["ratio_iqr"]
        assert per_repeat[0] <= low <= statistics.median(per_repeat) <= high <= per_repeat[-1]
    model_rows = {row[0]: row for row in markdown_rows(md, "fusionvit_micro_32 vs timm crossvit")}
    for mode in ("train", "infer"):
        assert model_rows[mode][1] == f"{m[mode]['ours_img_s']:.1f}"
        assert model_rows[mode][3] == f"{m[mode]['ratio']:.2f}"

    assert set(r["fusion"]) == {"all_attn", "cls_token", "cross", "gated_cross", "pairwise"}
    for name, f in r["fusion"].items():
        rows = f["rows"]
        assert [row["img"] for row in rows] == [24, 48, 96, 192]
        assert all(row["flops"] > 0 and row["time_s"] > 0 for row in rows)
        # The slope is the fit over the larger half of the sizes: with four sizes, the two-point slope of the last
        # doubling (4x the tokens), computed here by hand.
        last, before = rows[-1], rows[-2]
        by_hand = math.log(last["flops"] / before["flops"]) / math.log(last["tokens"] / before["tokens"])
        assert math.isclose(f["flops_slope"], by_hand, abs_tol=1e-6), name
    assert r["fusion"]["cross"]["flops_slope"] < 1.1 < 1.5 < r["fusion"]["all_attn"]["flops_slope"]
    assert r["fusion"]["gated_cross"]["flops_slope"] < 1.1  # cross plus a per-channel gate: still linear

    o = r["overhead"]
    assert o["harness_status"] == "completed" and o["harness_img_s"] > 0 and o["bare_img_s"] > 0

    s = r["startup"]
    assert s["repeats"] == 1 and s["help_s"] == s["times_s"]["help"][0] > 0
    assert s["beyond_torch_s"] == s["help_s"] - s["import_torch_s"] and s["import_torch_s"] > 0
    startup_rows = {row[0]: row[1] for row in markdown_rows(md, "Start-up")}
    assert startup_rows["difference"] == f"{s['beyond_torch_s']:.2f}"

    # Each target's `met` agrees with its measured value against the threshold written in its name, each measured
    # value is the figure of the report it names, and the Markdown table says the same.
    targets = {t["target"]: t for t in r["targets"]}
    for name, t in targets.items():
        op, threshold = re.search(r"(>=|<=|<) ([0-9.]+)", name).groups()
        compare = {">=": operator.ge, "<=": operator.le, "<": operator.lt}[op]
        assert t["met"] == compare(t["measured"], float(threshold))
    measured = {name.split(" (")[0]: t["measured"] for name, t in targets.items()}
    assert measured["train ours/timm >= 1.0"] == m["train"]["ratio"]
    assert measured["infer ours/timm >= 1.0"] == m["infer"]["ratio"]
    assert measured["cross fusion FLOPs slope <= 1.1"] == r["fusion"]["cross"]["flops_slope"]
    assert measured["gated_cross fusion FLOPs slope <= 1.1"] == r["fusion"]["gated_cross"]["flops_slope"]
    assert measured["all_attn fusion FLOPs slope >= 1.8"] == r["fusion"]["all_attn"]["flops_slope"]
    assert measured["harness overhead ratio >= 0.9"] == o["ratio"]
    assert measured["src.run --help beyond torch import < 3 s"] == s["beyond_torch_s"]
    assert any(name.startswith("train achieved / matmul FLOP/s") for name in targets)
    md_targets = {row[0]: row for row in markdown_rows(md, "Targets")}
    assert set(md_targets) == set(targets)
    for name, t in targets.items():
        assert md_targets[name][1:] == [f"{t['measured']:.2f}", "yes" if t["met"] else "NO"]

    assert "aten::" in r["profile"]
    for section in ("Fusion cost scaling", "Harness overhead", "Start-up", "Profile"):
        assert f"## {section}" in md


def test_sweep_section_reports_throughput_ratio_and_same_numbers():
    """The sweep part's figures from two sweeps' results (tests/test_launchers.py runs the launchers for real)."""
    def job(fusion, seed, top1, wall_time_s):
        return {"run_dir": f"/tmp/sweep/fusion={fusion},seed={seed}", "wall_time_s": wall_time_s,
                "provenance": {"threads": 1}, "history": [{"train_loss": 1.5, "val_loss": 1.25, "top1": top1}]}
    serial_runs = [job("none", 0, 50.0, 10.0), job("cross", 0, 60.0, 14.0)]
    serial, parallel = summary(60.0, serial_runs, 1), summary(40.0, [dict(run) for run in serial_runs], 2)
    assert (serial["jobs_per_min"], parallel["jobs_per_min"], serial["mean_job_s"]) == (2.0, 3.0, 12.0)
    same = epoch_numbers(serial_runs) == epoch_numbers([job("cross", 0, 60.0, 1.0), job("none", 0, 50.0, 1.0)])
    assert same and epoch_numbers(serial_runs) != epoch_numbers([job("none", 0, 50.1, 10.0), serial_runs[1]])
    sweep = {"grid": "fusion=none,cross", "epochs": 1, "cores": 2, "serial": serial, "parallel": parallel,
             "ratio": parallel["jobs_per_min"] / serial["jobs_per_min"], "same_numbers": same}
    r = {"device": "cpu", "threads": 1, "load_before": "0", "load_after": "0", "sweep": sweep}
    r["targets"] = check_targets(r)
    (target,) = r["targets"]
    assert target["target"].startswith("sweep parallel/serial throughput >= 1.0") and target["measured"] == 1.5
    assert target["met"]
    rows = {row[0].split(" (")[0]: row for row in markdown_rows(to_markdown(r), "Sweep throughput")}
    assert rows["serial"][1:6] == ["1", "2", "60.0", "2.00", "12.0"]
    assert rows["parallel"][1:6] == ["2", "2", "40.0", "3.00", "12.0"]
    assert "Parallel / serial throughput: 1.50; the same per-epoch numbers: yes." in to_markdown(r)
    one_worker = dict(sweep, parallel=dict(parallel, workers=1))
    assert check_targets({"sweep": one_worker}) == []  # one core: nothing runs beside anything


def test_throughput_part_reports_a_cpu_figure_at_the_papers_batch_as_ours_alone(tmp_path):
    """Not timed: the part runs the paper's protocol on a Table 2 row's model and labels what it measured."""
    main(["--parts", "throughput", "--row", "DeiT-Ti", "--throughput-iterations", "1", "--throughput-warmup", "0",
          "--throughput-dtype", "fp32,bf16", "--matmul-n", "256", "--device", "cpu", "--out", str(tmp_path),
          "--name", "throughput"])
    r, r_bf16 = json.loads((tmp_path / "throughput.json").read_text())["throughput"]
    assert (r["row"], r["model"], r["batch"], r["dtype"], r["iterations"]) == (
        "DeiT-Ti", "model=fusionvit_deit_tiny_224 fusion=none", 64, "fp32", 1)
    assert (r_bf16["row"], r_bf16["dtype"]) == ("DeiT-Ti", "bf16") and r_bf16["ours_img_s"] > 0
    assert r["ours_img_s"] > 0 and r["paper_img_s"] is None and r_bf16["paper_img_s"] is None
    md = (tmp_path / "throughput.md").read_text()
    row, row_bf16 = markdown_rows(md, "Throughput")
    assert row[:6] == ["DeiT-Ti", r["model"], f"cpu ({r['threads']} threads)", "fp32", f"{r['ours_img_s']:.1f}", "-"]
    assert row[6].startswith("ours alone: a CPU figure")
    assert row_bf16[3:6] == ["bf16", f"{r_bf16['ours_img_s']:.1f}", "-"]
    assert row_bf16[6] == "ours alone: bf16 autocast, where the paper measured fp32"
    assert "2557" not in md  # the paper's V100 figure for DeiT-Ti is not set beside a CPU's


def test_an_unknown_throughput_dtype_is_refused_before_any_work(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--parts", "throughput", "--throughput-dtype", "fp32,fp8"])
    assert exit_.value.code == 2
    assert "--throughput-dtype fp8: pick from fp32, bf16" in capsys.readouterr().err


def test_the_models_part_trains_under_bf16_autocast_on_the_cpu_when_asked(tmp_path):
    main(["--parts", "models", "--variant", "fusionvit_micro_32", "--batch", "2", "--repeats", "1", "--warmup", "0",
          "--amp", "bf16", "--matmul-n", "64", "--profile", "off", "--out", str(tmp_path), "--name", "bf16"])
    (m,) = json.loads((tmp_path / "bf16.json").read_text())["models"]
    assert m["amp_bf16"] is True and m["device"] == "cpu" and m["train"]["ours_img_s"] > 0
    assert "## fusionvit_micro_32 vs timm crossvit, batch 2, compile=False, bf16 autocast" in (
        tmp_path / "bf16.md").read_text()


def test_throughput_on_a_gpu_sets_the_papers_figure_beside_ours(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    paper, label = throughput.paper_beside(torch.device("cuda"), throughput.paper_row("DeiT-S")["throughput"])
    assert paper == 966 and label.startswith("ours on NVIDIA H200 beside the paper's V100")
    result = dict(row="DeiT-S", model="m", device="cuda:0", threads=1, batch=64, iterations=100, warmup=10,
                  ours_img_s=3000.0, paper_img_s=paper, label=label, dtype="fp32")
    (row,) = markdown_rows("\n".join(["# x", ""] + throughput.to_markdown([result])), "Throughput")
    assert row[3:6] == ["fp32", "3000.0", "966"]
    with pytest.raises(ValueError, match=r"no throughput for row 'DeiT-XL' .*: pick one of DeiT-Ti, CrossViT-Ti"):
        throughput.paper_row("DeiT-XL")


def test_the_matmul_ceiling_is_the_median_round_of_back_to_back_products(monkeypatch, tmp_path):
    """Rounds of 10 products: 2 n^3 x 10 FLOP over each round's time (given here, so no clock is read)."""
    seconds = iter([0.004, 0.001, 0.002])
    monkeypatch.setattr(ceiling, "_host_seconds", lambda product, repeats: next(seconds))
    result = ceiling.main(["--device", "cpu", "--n", "64", "--out", str(tmp_path / "ceiling.json")])
    rounds = [2 * 64**3 * 10 / s / 1e12 for s in (0.004, 0.001, 0.002)]
    assert result["tflops_rounds"] == pytest.approx(rounds) and result["tflops"] == pytest.approx(rounds[2])
    assert json.loads((tmp_path / "ceiling.json").read_text())["dtype"] == "bf16"
    assert result["clock"] == "host perf_counter" and result["n"] == 64


def test_the_model_matrix_keeps_each_configuration_with_peak_memory_per_model_and_mode(monkeypatch, tmp_path):
    resets = []
    monkeypatch.setattr(speed, "reset_peak_memory", lambda: resets.append(1))
    out = tmp_path / "models.jsonl"
    out.write_text("left from an earlier run\n")
    model_matrix.main(["--variants", "fusionvit_micro_32", "--precisions", "fp32,bf16", "--batch", "2", "--repeats",
                       "1", "--warmup", "0", "--device", "cpu", "--out", str(out)])
    rows = model_matrix.read_matrix(out)
    assert [(r["variant"], r["precision"], r["amp_bf16"]) for r in rows] == [
        ("fusionvit_micro_32", "fp32", False), ("fusionvit_micro_32", "bf16", True)]  # this run's, in order
    assert len(resets) == 2 * 2 * 2  # per configuration, before each model's steps in each mode
    for row in rows:
        for mode in ("train", "infer"):
            assert set(row[mode]["memory"]) == {"ours", "timm"}
            assert row[mode]["timm_gflops"] == pytest.approx(row[mode]["ours_gflops"] / row[mode]["ratio"])
        assert row["peak_memory_mb"] == max(m["peak_memory_mb"] for mode in ("train", "infer")
                                            for m in row[mode]["memory"].values())
    with out.open("a") as lines:
        lines.write('{"variant": "cut by a kill')
    assert len(model_matrix.read_matrix(out)) == 2
    assert model_matrix.timm_name("fusionvit_small_240") == "crossvit_small_240"
