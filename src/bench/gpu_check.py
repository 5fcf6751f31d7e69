"""``python -m src.bench.gpu_check --out /tmp/gpu_check --report DIR``: the one-shot GPU check, one script for one
lent GPU machine (device/README.md), under 7.5 minutes. Its steps, in order, each its own process:

1. ``jpegs``: ImageNet-like JPEGs for the image-folder steps, written first (``src.bench.jpegs``);
2. ``ceiling``: the card's bf16 matmul rate, 8192^3 products timed by CUDA events (``src.bench.ceiling``);
3. ``models_eager``: ours vs timm (fusionvit_9_240 vs crossvit_9_240, fusionvit_small_240 vs crossvit_small_240),
   train and infer, bf16 and fp32, peak memory per model and mode (``src.bench.model_matrix``);
4. ``throughput``: the paper's protocol (batch 64, 100 iterations) for DeiT-S and CrossViT-S, fp32 and bf16;
5. ``loader``: the uint8 pipeline a CUDA run's workers run, on those JPEGs, at 1, half and all but one cores;
6. ``run_eager``: ``src.run`` on the JPEGs, fusionvit_9_240, bf16, batch 128, two epochs; the last epoch's
   images/s, epoch time and data wait from its results.json;
7. ``run_compiled``: the same with ``train.compile=true`` under ``TORCH_LOGS=recompiles,graph_breaks``;
8. ``models_compiled``: step 3 compiled, bf16 first; each configuration is kept as soon as it is done.

Each step has its own time cap (``src.bench.gpu_plan.CAPS_S``; the last one also takes what the others left of the
budget); one that fails or runs out of time is recorded with its output's tail and the next one runs. Everything a
step writes stays under ``--out``; ``--report`` gets only gpu_check.json, gpu_check.md and gpu_check_logs.txt (the
tail of each step's log), rewritten before and after every step, so a kill at any point leaves a report of what was
done. Without CUDA the check refuses (exit 2); ``--device cpu --tiny`` runs the same steps at toy sizes (compiling
disabled): how the tests check it without a GPU."""
import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from src.bench import gpu_report
from src.bench.gpu_plan import CAPS_S, FULL, JPEG_STEPS, TINY, Plan, Step, plan_steps

ROOT = Path(__file__).resolve().parents[2]
BUDGET_S = 440  # the caps' sum (420 s) and the driver's own start; one 9-minute device call holds it
TAIL_CHARS = 3000
KILL_GRACE_S = 5  # SIGTERM to SIGKILL: src.run stops cleanly on SIGTERM


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the step's process group (its DataLoader and compile workers too), then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run_step(step: Step, cap_s: float, log_path: Path) -> dict:
    """Runs ``step`` with ``cap_s`` seconds; rc 124 when it ran out of them (as ``timeout`` says it)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log_path.open("w") as log:
        process = subprocess.Popen(step.command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, **step.env}, start_new_session=True)
        try:
            rc = process.wait(timeout=cap_s)
        except subprocess.TimeoutExpired:
            stop_group(process)
            rc = 124
        except BaseException:  # the driver itself stopped: leave no step running on the GPU
            stop_group(process)
            raise
        with contextlib.suppress(ProcessLookupError):  # workers the step left behind hold no GPU or CPU after it
            os.killpg(process.pid, signal.SIGKILL)
    output = log_path.read_text(errors="replace")
    record = {"step": step.name, "cap_s": cap_s, "rc": rc, "status": status_of(rc),
              "wall_s": time.perf_counter() - started, "command": printable(step.command),
              "env": step.env, "log": str(log_path), "output_tail": output[-TAIL_CHARS:]}
    if step.torch_logs:
        record["torch_logs"] = gpu_report.torch_log_counts(output)
    return record


def status_of(rc: int) -> str:
    return "ok" if rc == 0 else "timed out" if rc == 124 else "failed"


def printable(command: List[str]) -> str:
    return " ".join(["python", *command[1:]] if command[0] == sys.executable else command)


def step_caps(overrides: List[str]) -> Dict[str, float]:
    """``--cap NAME=SECONDS`` over ``CAPS_S``."""
    caps = dict(CAPS_S)
    for item in overrides:
        name, _, seconds = item.partition("=")
        if name not in caps or not seconds:
            raise ValueError(f"--cap {item}: give NAME=SECONDS with NAME one of {', '.join(caps)}")
        caps[name] = float(seconds)
    return caps


def chosen(steps: List[Step], names: Optional[str]) -> List[Step]:
    """``--steps a,b``: those steps, with ``jpegs`` first when a chosen step reads the JPEGs (a fresh machine has
    none)."""
    if not names:
        return steps
    wanted = set(names.split(","))
    unknown = wanted - {step.name for step in steps}
    if unknown:
        raise ValueError(f"--steps {','.join(sorted(unknown))}: pick from {', '.join(s.name for s in steps)}")
    if wanted & set(JPEG_STEPS):
        wanted.add("jpegs")
    return [step for step in steps if step.name in wanted]


def run_all(steps: List[Step], report: dict, report_dir: Path, logs_dir: Path, budget_s: float) -> dict:
    """Each step in turn under its cap, cut to what is left of ``budget_s`` (all of that for a step that takes the
    rest); the report rewritten around each."""
    started = time.perf_counter()
    report["steps"] = [{"step": step.name, "cap_s": step.cap_s, "status": "pending"} for step in steps]
    gpu_report.write(report, report_dir)
    for index, step in enumerate(steps):
        left_s = budget_s - (time.perf_counter() - started)
        if left_s < 1:
            report["steps"][index].update(status="not run", rc=None, reason=f"the {budget_s:.0f} s budget is spent")
        else:
            report["steps"][index].update(status="running")
            gpu_report.write(report, report_dir)
            cap_s = left_s if step.takes_the_rest else min(step.cap_s, left_s)
            record = run_step(step, cap_s, logs_dir / f"{step.name}.log")
            record["figures"] = step.read_figures()
            report["steps"][index] = record
            print(f"{step.name}: {record['status']} (rc {record['rc']}) in {record['wall_s']:.0f} s "
                  f"of {record['cap_s']:.0f}", flush=True)
        report["wall_s"] = time.perf_counter() - started
        gpu_report.write(report, report_dir)
    return report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m src.bench.gpu_check", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/gpu_check"), help="the steps' files (JPEGs, run dirs)")
    p.add_argument("--report", type=Path, default=None, help="where the report files go (default --out)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="toy sizes, compiling disabled (the tests' setting)")
    p.add_argument("--steps", default=None, help="a comma-separated subset, e.g. to re-run one that failed")
    p.add_argument("--cap", action="append", default=[], metavar="NAME=SECONDS", help="a step's cap, repeatable")
    p.add_argument("--budget-s", type=float, default=BUDGET_S, help="all steps together")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    import torch  # here: --help needs no torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: no CUDA device here: this check needs a GPU (`python -m src.bench` runs on the CPU; "
              "`--device cpu --tiny` runs this script's steps at toy sizes)", file=sys.stderr)
        return 2
    try:
        caps = step_caps(args.cap)
        plan = Plan(out=args.out.resolve(), device=args.device, sizes=TINY if args.tiny else FULL, caps=caps)
        steps = chosen(plan_steps(plan), args.steps)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report_dir = (args.report or args.out).resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    report = gpu_report.header(plan, args.budget_s, args.tiny)
    run_all(steps, report, report_dir, plan.out / "logs", args.budget_s)
    print(f"wrote {report_dir / gpu_report.JSON_NAME} and {report_dir / gpu_report.MD_NAME}")
    return 0 if all(step.get("rc") == 0 for step in report["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main())
