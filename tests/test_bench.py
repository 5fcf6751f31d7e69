"""The benchmark runs end to end on a tiny configuration; checks the report's shape, not speed."""
import json

from src.bench.__main__ import main


def test_bench_tiny_end_to_end(tmp_path):
    main(["--variant", "micro_32", "--batch", "4", "--repeats", "1", "--warmup", "1", "--fusion-base-img", "24",
          "--overhead-train", "32", "--matmul-n", "256", "--out", str(tmp_path), "--name", "tiny", "--threads", "1",
          "--profile", "on"])
    r = json.loads((tmp_path / "tiny.json").read_text())
    assert r["matmul_gflops"] > 0 and r["device"] == "cpu"
    (m,) = r["models"]
    assert m["variant"] == "micro_32" and m["batch"] == 4 and m["compile"] is False
    for mode in ("train", "infer"):
        s = m[mode]
        assert s["ours_img_s"] > 0 and s["timm_img_s"] > 0 and s["ours_gflops"] > 0
        assert abs(s["ratio"] - s["ours_img_s"] / s["timm_img_s"]) < 1e-9
    assert m["peak_memory_mb"] > 0 and m["gmacs_per_image"] > 0
    assert set(r["fusion"]) == {"all_attn", "cls_token", "cross", "pairwise"}
    for f in r["fusion"].values():
        tokens = [row["tokens"] for row in f["rows"]]
        assert len(tokens) == 4 and tokens == sorted(tokens)
        assert all(row["flops"] > 0 and row["time_s"] > 0 for row in f["rows"])
    assert r["fusion"]["cross"]["flops_slope"] < r["fusion"]["all_attn"]["flops_slope"]
    o = r["overhead"]
    assert o["harness_status"] == "completed" and o["harness_img_s"] > 0 and o["bare_img_s"] > 0
    names = [t["target"] for t in r["targets"]]
    assert len(names) == 7 and all(len(m[mode]["ratio_iqr"]) == 2 for mode in ("train", "infer")) and any("overhead" in n for n in names) and any("cross fusion" in n for n in names)
    assert all(isinstance(t["met"], bool) for t in r["targets"])
    assert "aten::" in r["profile"]
    md = (tmp_path / "tiny.md").read_text()
    for section in ("ours/timm", "Fusion cost scaling", "Harness overhead", "Targets", "Profile"):
        assert section in md
