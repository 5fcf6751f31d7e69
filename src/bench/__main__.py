"""`python -m src.bench`: writes bench_results/<name>.json and .md (docs/benchmarks.md)."""
import argparse
import json
import os
from pathlib import Path

import torch

from src.bench import loader, startup, throughput
from src.bench.overhead import bench_overhead
from src.bench.scaling import bench_fusion
from src.bench.speed import bench_models, matmul_gflops, profile_train_step
from src.bench.sweep import bench_sweep, sweep_markdown, sweep_targets


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def to_markdown(r: dict) -> str:
    lines = [f"# Benchmark ({r['device']}, {r['threads']} threads, load {r['load_before']} -> {r['load_after']})", ""]
    for m in r.get("models", []):
        precision = "bf16 autocast" if m["amp_bf16"] else "fp32"
        lines += [f"## {m['variant']} vs timm crossvit, batch {m['batch']}, compile={m['compile']}, {precision}", "",
                  "| step | ours img/s | timm img/s | ours/timm | per-repeat ratio IQR | ours GFLOP/s | / matmul |",
                  "|---|---|---|---|---|---|---|"]
        for mode in ("train", "infer"):
            s = m[mode]
            low, high = s["ratio_iqr"]
            lines.append(f"| {mode} | {s['ours_img_s']:.1f} | {s['timm_img_s']:.1f} | {s['ratio']:.2f} | "
                         f"{low:.2f}-{high:.2f} | {s['ours_gflops']:.1f} | "
                         f"{s['ours_gflops'] / r['matmul_gflops']:.2f} |")
        lines += ["", f"Peak memory {m['peak_memory_mb']:.0f} MiB ({m['peak_memory_source']}); "
                      f"{m['gmacs_per_image']:.3f} GMACs/image; matmul {r['matmul_gflops']:.1f} GFLOP/s.", ""]
    if "fusion" in r:
        lines += ["## Fusion cost scaling (module alone; slope of log cost on log tokens, larger half of the sizes)",
                  "", "| fusion | tokens | FLOPs slope | time slope |", "|---|---|---|---|"]
        for name, f in r["fusion"].items():
            toks = ", ".join(str(row["tokens"]) for row in f["rows"])
            lines.append(f"| {name} | {toks} | {f['flops_slope']:.2f} | {f['time_slope']:.2f} |")
        lines.append("")
    if "overhead" in r:
        o = r["overhead"]
        lines += ["## Harness overhead", "", f"`src.run` epoch {o['harness_img_s']:.1f} img/s vs bare step "
                  f"{o['bare_img_s']:.1f} img/s ({o['variant']}, batch {o['batch']}): ratio {o['ratio']:.2f}", ""]
    if "startup" in r:
        lines += startup.to_markdown(r["startup"])
    if "sweep" in r:
        lines += sweep_markdown(r["sweep"])
    if r.get("throughput"):
        lines += throughput.to_markdown(r["throughput"])
    if r.get("loader"):
        lines += loader.to_markdown(r["loader"])
    if r.get("targets"):
        lines += ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
        lines += [f"| {t['target']} | {t['measured']:.2f} | {'yes' if t['met'] else 'NO'} |" for t in r["targets"]]
        lines.append("")
    if r.get("profile"):
        lines += ["## Profile: top operators of our training step (self CPU/CUDA time)", "", "```",
                  r["profile"], "```", ""]
    return "\n".join(lines)


def check_targets(r: dict) -> list:
    """The performance targets, each with the figure it was judged on."""
    targets = []

    def add(name, value, ok):
        targets.append({"target": name, "measured": float(value), "met": bool(ok)})
    eager = next((m for m in r.get("models", []) if not m["compile"]), None)
    for m in r.get("models", []):
        label = "compiled" if m["compile"] else "eager"
        need = 1.3 if m["compile"] else 1.0
        for mode in ("train", "infer"):
            add(f"{mode} ours/timm >= {need} ({label}, {m['variant']}, batch {m['batch']})", m[mode]["ratio"],
                m[mode]["ratio"] >= need)
        if m["compile"] and eager:  # what compiling buys over the eager reference
            for mode in ("train", "infer"):
                speedup = m[mode]["ours_img_s"] / eager[mode]["timm_img_s"]
                add(f"{mode} ours compiled / timm eager >= 1.3 ({m['variant']}, batch {m['batch']})", speedup,
                    speedup >= 1.3)
        fraction = m["train"]["ours_gflops"] / r["matmul_gflops"]
        add(f"train achieved / matmul FLOP/s >= 0.6 ({label})", fraction, fraction >= 0.6)
    if "fusion" in r:
        cross, full = r["fusion"]["cross"]["flops_slope"], r["fusion"]["all_attn"]["flops_slope"]
        add("cross fusion FLOPs slope <= 1.1", cross, cross <= 1.1)
        gated = r["fusion"]["gated_cross"]["flops_slope"]
        add("gated_cross fusion FLOPs slope <= 1.1", gated, gated <= 1.1)
        add("all_attn fusion FLOPs slope >= 1.8", full, full >= 1.8)
    if "overhead" in r:
        add("harness overhead ratio >= 0.9", r["overhead"]["ratio"], r["overhead"]["ratio"] >= 0.9)
    if "startup" in r:
        beyond = r["startup"]["beyond_torch_s"]
        add(startup.TARGET, beyond, beyond < startup.LIMIT_S)
    if "sweep" in r:
        for target in sweep_targets(r["sweep"]):
            add(*target)
    return targets


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m src.bench", description=__doc__)
    p.add_argument("--variant", default="fusionvit_9_240")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--compile", choices=["off", "on", "both"], default="off")
    p.add_argument("--amp", choices=["auto", "off", "bf16"], default="auto",
                   help="models: bf16 autocast (auto: on CUDA only; bf16 on the CPU too)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--parts", default="models,fusion,overhead,startup,sweep",
                   help="any of models,fusion,overhead,startup,sweep,throughput,loader (throughput and loader are "
                   "not in the default)")
    p.add_argument("--fusion-base-img", type=int, default=32, help="first image size; doubled 3 times")
    p.add_argument("--overhead-variant", default="fusionvit_micro_32")
    p.add_argument("--overhead-train", type=int, default=512)
    p.add_argument("--matmul-n", type=int, default=None,
                   help="the ceiling's matmul size (default 8192 on CUDA, where a smaller one is launch-bound; 2048 "
                   "on the CPU)")
    p.add_argument("--startup-repeats", type=int, default=3, help="fresh `src.run --help` processes timed")
    p.add_argument("--sweep-grid", default="fusion=none,cross seed=0,1", help="the sweep's overrides of make_run")
    p.add_argument("--sweep-epochs", type=int, default=2)
    p.add_argument("--row", action="append", help="throughput: a paper row of Table 2 or 4 (e.g. DeiT-S, CrossViT-S); "
                   "repeatable; default DeiT-S")
    p.add_argument("--throughput-batch", type=int, default=throughput.PAPER_BATCH, help="the paper's: 64")
    p.add_argument("--throughput-iterations", type=int, default=throughput.PAPER_ITERATIONS, help="the paper's: 100")
    p.add_argument("--throughput-warmup", type=int, default=10, help="untimed passes before them")
    p.add_argument("--throughput-dtype", default="fp32",
                   help="throughput: fp32 (the paper's), bf16 (autocast) or both: fp32,bf16")
    p.add_argument("--loader-root", default=None, help="loader: where to write the JPEGs (default a temporary folder)")
    p.add_argument("--loader-images", type=int, default=64, help="loader: JPEGs written per split (train, val)")
    p.add_argument("--loader-classes", type=int, default=2, help="loader: class folders they are dealt into")
    p.add_argument("--loader-size", default="500x375", help="loader: WIDTHxHEIGHT of the JPEGs (ImageNet-like)")
    p.add_argument("--loader-pipeline", choices=list(loader.PIPELINES), default="float",
                   help="loader: float (a CPU run's transforms) or uint8 (a CUDA run's: normalised on the GPU)")
    p.add_argument("--loader-existing", action="store_true",
                   help="loader: time the JPEGs already under --loader-root instead of writing new ones")
    p.add_argument("--loader-decode-files", type=int, default=None,
                   help="loader: raw decode speed on the first N files (default all)")
    p.add_argument("--loader-batch", type=int, default=64)
    p.add_argument("--loader-workers", default="0,1,2", help="loader: worker counts timed (0: the main process)")
    p.add_argument("--loader-batches", type=int, default=8, help="loader: timed batches after the warm-up")
    p.add_argument("--loader-target-img-s", type=float, default=loader.TARGET_IMG_S,
                   help="loader: the training rate to feed (default timm's crossvit_tiny_240 AMP on an RTX 3090)")
    p.add_argument("--out", default="bench_results")
    p.add_argument("--name", default="bench")
    p.add_argument("--profile", choices=["auto", "on", "off"], default="auto",
                   help="torch.profiler top operators of our training step (auto: when a model target is missed)")
    return p


def main(argv=None):
    p = parser()
    a = p.parse_args(argv)
    unknown = [dtype for dtype in a.throughput_dtype.split(",") if dtype not in throughput.DTYPES]
    if unknown:
        p.error(f"--throughput-dtype {','.join(unknown)}: pick from {', '.join(throughput.DTYPES)} (comma-separated)")
    if a.threads:
        torch.set_num_threads(a.threads)
    r = run_parts(a, set(a.parts.split(",")))
    write_report(r, Path(a.out), a.name)
    return r


def run_parts(a, parts) -> dict:
    """Each benchmark part asked for, its figures under its name, then the targets they meet or miss."""
    r = {"device": a.device, "threads": torch.get_num_threads(), "torch": torch.__version__,
         "load_before": load_average(),
         "matmul_gflops": matmul_gflops(a.device, a.matmul_n or (8192 if a.device.startswith("cuda") else 2048))}
    if "models" in parts:
        modes = {"off": [False], "on": [True], "both": [False, True]}[a.compile]
        amp = {"auto": None, "off": False, "bf16": True}[a.amp]
        r["models"] = [bench_models(a.variant, a.batch, a.repeats, a.warmup, c, a.device, amp) for c in modes]
    if "fusion" in parts:
        r["fusion"] = bench_fusion(base_img=a.fusion_base_img)
    if "overhead" in parts:
        r["overhead"] = bench_overhead(a.overhead_variant, a.batch, num_train=a.overhead_train,
                                       threads=torch.get_num_threads(), device=a.device)
    if "startup" in parts:
        r["startup"] = startup.bench_startup(a.startup_repeats)
    if "sweep" in parts:
        r["sweep"] = bench_sweep(a.sweep_grid, a.sweep_epochs)
    if "throughput" in parts:
        r["throughput"] = [throughput.bench_throughput(row, a.device, a.throughput_batch, a.throughput_iterations,
                                                       a.throughput_warmup, dtype)
                           for row in a.row or ["DeiT-S"] for dtype in a.throughput_dtype.split(",")]
    if "loader" in parts:
        r["loader"] = loader.bench_loader(a.loader_root, a.loader_images, a.loader_classes,
                                          loader.parse_size(a.loader_size), a.loader_batch,
                                          loader.parse_workers(a.loader_workers), a.loader_batches,
                                          a.loader_target_img_s, pipeline=a.loader_pipeline,
                                          existing=a.loader_existing, decode_files=a.loader_decode_files)
    r["load_after"] = load_average()
    r["targets"] = check_targets(r)
    missed_model_target = any(not t["met"] for t in r["targets"]
                              if "ours/timm" in t["target"] or "matmul" in t["target"])
    if "models" in parts and (a.profile == "on" or (a.profile == "auto" and missed_model_target)):
        r["profile"] = profile_train_step(a.variant, a.batch, a.device)
    return r


def write_report(r: dict, out: Path, name: str) -> None:
    """``OUT/NAME.json`` (atomically) and ``OUT/NAME.md``, which is also printed."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{name}.json.tmp"
    tmp.write_text(json.dumps(r, indent=2))
    os.replace(tmp, out / f"{name}.json")
    md = to_markdown(r)
    (out / f"{name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
