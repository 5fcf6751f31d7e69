"""``python -m src.bench.gpu_check [--out DIR]``: the one-shot GPU check, one script that runs in under 8 minutes on
one GPU and writes ``gpu_check.json`` and ``gpu_check.md`` (copy its figures to docs/benchmarks.md, naming the device):

1. ``src.bench --device cuda --compile both``: ours vs timm (crossvit_tiny_240), train and infer, bf16 autocast,
   eager and compiled; the paper's throughput protocol (batch 64) for DeiT-S and CrossViT-S in fp32 and bf16; and
   the loader bench at the machine's cores, on ImageNet-like JPEGs it writes;
2. a short ``src.run`` on CUDA with bf16 on those JPEGs (``data=imagefolder``: the uint8 pipeline, pinned memory and
   the device-side normalisation of ``src.data.prefetch``), and the same with ``train.compile=true``; each run's
   top-1, images/s and data wait are read from its results.json.

Each step runs in its own process with a time limit; a step that fails is recorded with its output's tail and the
next one still runs. ``--device cpu --tiny`` runs the same steps at toy sizes without bf16 or compile: how the
tests check the script's plumbing without a GPU."""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

ROOT = Path(__file__).resolve().parents[2]
BUDGET_S = 8 * 60
CLASSES = 2


def bench_command(out: Path, jpegs: Path, device: str, tiny: bool) -> List[str]:
    cores = len(os.sched_getaffinity(0))
    common = ["--device", device, "--out", str(out), "--name", "bench", "--loader-root", str(jpegs),
              "--loader-classes", str(CLASSES), "--row", "DeiT-S" if not tiny else "DeiT-Ti",
              "--throughput-dtype", "fp32,bf16" if not tiny else "fp32"]
    if tiny:
        return [*common, "--parts", "models,throughput,loader", "--variant", "fusionvit_micro_32", "--batch", "4",
                "--repeats", "1", "--warmup", "0", "--matmul-n", "128", "--throughput-batch", "2",
                "--throughput-iterations", "1", "--throughput-warmup", "0", "--loader-images", "8",
                "--loader-size", "64x48", "--loader-batch", "4", "--loader-batches", "1", "--loader-workers", "0,1",
                "--profile", "off"]
    return [*common, "--parts", "models,throughput,loader", "--compile", "both", "--variant", "fusionvit_tiny_240",
            "--batch", "64", "--repeats", "5", "--row", "CrossViT-S", "--loader-images", "512",
            "--loader-workers", ",".join(str(n) for n in sorted({0, max(1, cores // 2), cores})), "--profile", "off"]


def run_command(out: Path, jpegs: Path, device: str, tiny: bool, compile_: bool) -> List[str]:
    model = ["model=fusionvit_micro_32"] if tiny else ["model=fusionvit_tiny_240"]
    precision = [] if tiny else ["train.amp=bf16"]
    return [sys.executable, "-m", "src.run", "data=imagefolder", f"data.root={jpegs}", f"data.num_classes={CLASSES}",
            "data.num_workers=null",  # auto: the CPUs this rank has on CUDA
            *model, *precision, f"train.device={device}", f"train.compile={str(compile_).lower()}", "train.epochs=1",
            f"train.batch_size={4 if tiny else 64}", "logger=none", "train.progress=log", "train.force=true",
            f"hydra.run.dir={out / ('run_compile' if compile_ else 'run')}"]


def run_step(name: str, command: List[str], timeout_s: float) -> Dict:
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout_s, env=dict(os.environ, WANDB_SILENT="true"))
        rc, output = done.returncode, done.stdout
    except subprocess.TimeoutExpired as expired:
        rc, output = 124, (expired.stdout or b"").decode() if isinstance(expired.stdout, bytes) else expired.stdout
    return {"step": name, "command": " ".join(command[2:] if command[0] == sys.executable else command), "rc": rc,
            "wall_s": time.perf_counter() - started, "output_tail": (output or "")[-3000:]}


def run_figures(run_dir: Path) -> Optional[Dict]:
    path = run_dir / "results.json"
    if not path.is_file():
        return None
    results = json.loads(path.read_text())
    last = (results.get("history") or [{}])[-1]
    return {"status": results.get("status"), "top1": last.get("top1"), "images_per_s": last.get("images_per_s"),
            "data_wait_frac": last.get("data_wait_frac"), "device": (results.get("provenance") or {}).get("device")}


def to_markdown(report: Dict) -> str:
    lines = [f"# GPU check: {report['device_name']} ({report['device']}), {report['cpus']} CPUs, "
             f"torch {report['torch']}",
             "", f"{report['wall_s']:.0f} s in all (budget {BUDGET_S} s).", "",
             "| step | rc | wall (s) | top-1 | img/s | data wait |", "|---|---|---|---|---|---|"]
    for step in report["steps"]:
        figures = step.get("figures") or {}
        cells = [f"{figures[key]:.3g}" if isinstance(figures.get(key), float) else "-"
                 for key in ("top1", "images_per_s", "data_wait_frac")]
        lines.append(f"| {step['step']} | {step['rc']} | {step['wall_s']:.0f} | {' | '.join(cells)} |")
    lines.append("")
    for step in report["steps"]:
        if step["rc"] != 0:
            lines += [f"## {step['step']} failed (rc {step['rc']})", "", f"`{step['command']}`", "", "```",
                      step["output_tail"], "```", ""]
    bench = Path(report["out"]) / "bench.md"
    if bench.is_file():
        lines += ["", bench.read_text()]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.bench.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_results/gpu_check"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="toy sizes, no bf16 or compile (the tests' setting)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: no CUDA device here: this check needs a GPU (`python -m src.bench` runs on the CPU; "
              "`--device cpu --tiny` runs this script's steps at toy sizes)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    jpegs = args.out / "jpegs"
    started, steps = time.perf_counter(), []
    plan = [("bench", bench_command(args.out, jpegs, args.device, args.tiny), None),
            ("run", run_command(args.out, jpegs, args.device, args.tiny, compile_=False), args.out / "run")]
    if not args.tiny:
        plan.append(("run_compile", run_command(args.out, jpegs, args.device, args.tiny, compile_=True),
                     args.out / "run_compile"))
    for name, command, run_dir in plan:
        if name == "bench":
            command = [sys.executable, "-m", "src.bench", *command]
        left = BUDGET_S - (time.perf_counter() - started)
        step = run_step(name, command, timeout_s=max(left, 30))
        step["figures"] = run_figures(run_dir) if run_dir else None
        steps.append(step)
        print(f"{name}: rc {step['rc']} in {step['wall_s']:.0f} s", flush=True)
    on_gpu = args.device.startswith("cuda")
    report = {"device": args.device, "device_name": torch.cuda.get_device_name(0) if on_gpu else "CPU",
              "cpus": len(os.sched_getaffinity(0)), "torch": torch.__version__, "tiny": args.tiny,
              "wall_s": time.perf_counter() - started, "out": str(args.out), "steps": steps}
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    (args.out / "gpu_check.md").write_text(to_markdown(report))
    print(f"wrote {args.out / 'gpu_check.json'} and {args.out / 'gpu_check.md'}")
    return 0 if all(step["rc"] == 0 for step in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
