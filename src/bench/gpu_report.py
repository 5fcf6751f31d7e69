"""The GPU check's report: ``gpu_check.json`` (everything), ``gpu_check.md`` (the tables) and
``gpu_check_logs.txt`` (the tail of each step's log), written atomically into the report folder."""
import datetime
import json
import math
import os
import platform
import re
from dataclasses import asdict
from pathlib import Path
from typing import List, Optional

from src.bench import loader, throughput
from src.bench.gpu_plan import Plan

JSON_NAME, MD_NAME, LOGS_NAME = "gpu_check.json", "gpu_check.md", "gpu_check_logs.txt"
TINY_NOTE = "; toy sizes (--tiny): compiling disabled (TORCH_COMPILE_DISABLE=1), no figure to read"
LOG_TAIL_LINES, LOG_TAIL_CHARS = 60, 8000  # per step in gpu_check_logs.txt: the report stays small
# TORCH_LOGS=recompiles,graph_breaks: one line opens each event, the lines after it give the reason
RECOMPILE = re.compile(r"\[__recompiles\] Recompiling function")
GRAPH_BREAK = re.compile(r"\[__graph_breaks\] Graph break")
TORCH_LOG = re.compile(r"\[__(recompiles|graph_breaks)\]")


def header(plan: Plan, budget_s: float, tiny: bool) -> dict:
    import timm
    import torch

    from src.train.provenance import cpu_device_name

    on_cuda = plan.device.startswith("cuda")
    return {"started_at": datetime.datetime.now().isoformat(timespec="seconds"), "device": plan.device,
            "device_name": torch.cuda.get_device_name(plan.device) if on_cuda else "CPU",
            "cpus": len(os.sched_getaffinity(0)), "cpu": cpu_device_name(), "python": platform.python_version(),
            "torch": torch.__version__, "cuda": torch.version.cuda, "timm": timm.__version__,
            "tiny": tiny, "sizes": asdict(plan.sizes), "caps_s": plan.caps,
            "budget_s": budget_s, "out": str(plan.out), "wall_s": 0.0, "steps": []}


def torch_log_counts(output: str) -> dict:
    lines = [line for line in output.splitlines() if TORCH_LOG.search(line)]
    return {"recompiles": sum(bool(RECOMPILE.search(line)) for line in lines),
            "graph_breaks": sum(bool(GRAPH_BREAK.search(line)) for line in lines), "lines": len(lines),
            "tail": [TORCH_LOG.split(line, maxsplit=1)[-1].strip()[:300] for line in lines[-30:]]}


def write(report: dict, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in ((JSON_NAME, json.dumps(report, indent=2)), (MD_NAME, to_markdown(report)),
                       (LOGS_NAME, logs_tail(report))):
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, folder / name)  # a kill mid-write leaves the last whole report


def logs_tail(report: dict) -> str:
    parts = []
    for step in report["steps"]:
        if "log" not in step:
            continue
        try:
            lines = Path(step["log"]).read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        except OSError:
            lines = ["(no log)"]
        parts += [f"===== {step['step']}: {step['status']} (rc {step['rc']}), {step['log']}",
                  "\n".join(lines)[-LOG_TAIL_CHARS:], ""]
    return "\n".join(parts)


def figures(report: dict, name: str):
    return next((step.get("figures") for step in report["steps"] if step["step"] == name), None)


def fmt(value, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def steps_table(report: dict) -> List[str]:
    lines = ["## Steps", "", "| step | cap s | wall s | rc | status |", "|---|---|---|---|---|"]
    for step in report["steps"]:
        lines.append(f"| {step['step']} | {step['cap_s']:.0f} | {fmt(step.get('wall_s'), '.0f')} | "
                     f"{fmt(step.get('rc'), 'd')} | {step['status']} |")
    return lines + [""]


def ceiling_lines(ceiling: Optional[dict]) -> List[str]:
    if not ceiling:
        return ["## Matmul ceiling", "", "Not measured (see the ceiling step).", ""]
    return ["## Matmul ceiling", "",
            f"{ceiling['dtype']} {ceiling['n']}^3 matmul on {ceiling['device_name']}: **{ceiling['tflops']:.1f} "
            f"TFLOP/s** (median of {ceiling['rounds']} rounds of {ceiling['repeats']} products after "
            f"{ceiling['warmup']} warm-up; {ceiling['clock']}).", ""]


def model_rows(configs: List[dict], ceiling_tflops: Optional[float]) -> List[str]:
    rows = []
    for c in configs:
        for mode in ("train", "infer"):
            s, memory = c[mode], c[mode]["memory"]
            share = [None if not ceiling_tflops else s[f"{who}_gflops"] / (1000 * ceiling_tflops)
                     for who in ("ours", "timm")]
            rows.append(f"| {c['variant']} | {c['timm_model']} | {c['precision']} | {c['compile']} | {mode} | "
                        f"{s['ours_img_s']:.0f} | {s['timm_img_s']:.0f} | {s['ratio']:.2f} | "
                        f"{memory['ours']['peak_memory_mb']:.0f} | {memory['timm']['peak_memory_mb']:.0f} | "
                        f"{fmt(share[0], '.3f')} | {fmt(share[1], '.3f')} |")
    return rows


def planned_configs(report: dict) -> List[str]:
    sizes = report["sizes"]
    return [f"{variant} {precision}" for precision in sizes["precisions"].split(",") for variant in sizes["variants"]]


def models_lines(report: dict) -> List[str]:
    ceiling = figures(report, "ceiling") or {}
    configs = (figures(report, "models_eager") or []) + (figures(report, "models_compiled") or [])
    batch = report["sizes"]["model_batch"]
    lines = [f"## Ours vs timm, batch {batch}", "",
             "img/s from the median step; peak memory per model and mode (the other model's weights stay resident); "
             "share of matmul = model FLOPs x img/s / the bf16 matmul ceiling.", "",
             "| ours | timm | precision | compiled | mode | ours img/s | timm img/s | ours/timm | ours peak MiB | "
             "timm peak MiB | ours share of matmul | timm share of matmul |", "|---" * 12 + "|"]
    lines += model_rows(configs, ceiling.get("tflops"))
    for step in report["steps"]:
        if step["step"].startswith("models_") and "rc" in step:  # a step that ran, in time or not
            done = {f"{c['variant']} {c['precision']}" for c in step.get("figures") or []}
            missing = [config for config in planned_configs(report) if config not in done]
            if missing:
                lines += ["", f"{step['step']} ({step['status']}): not measured: {', '.join(missing)}."]
    return lines + [""]


def runs_lines(report: dict) -> List[str]:
    sizes = report["sizes"]
    lines = [f"## Training runs: `src.run` on the JPEGs, {sizes['run_model']}, amp {sizes['run_amp']}, batch "
             f"{sizes['run_batch']}, {sizes['run_epochs']} epochs; the last epoch", "",
             "| run | status | epochs | img/s | epoch s | data wait | top-1 | peak MiB | recompiles | graph breaks |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for step in report["steps"]:
        if not step["step"].startswith("run_"):
            continue
        run, logs = step.get("figures") or {}, step.get("torch_logs") or {}
        lines.append(f"| {step['step']} | {run.get('status', step['status'])} | {fmt(run.get('epochs'), 'd')} | "
                     f"{fmt(run.get('images_per_s'), '.0f')} | {fmt(run.get('epoch_time_s'), '.2f')} | "
                     f"{fmt(run.get('data_wait_frac'), '.3f')} | {fmt(run.get('top1'), '.1f')} | "
                     f"{fmt(run.get('peak_memory_mb'), '.0f')} | {fmt(logs.get('recompiles'), 'd')} | "
                     f"{fmt(logs.get('graph_breaks'), 'd')} |")
    return lines + [""]


def workers_line(report: dict) -> List[str]:
    """Loader workers the measured training rate needs: ceil(run img/s / one worker's img/s), uint8 pipeline."""
    bench, run = figures(report, "loader"), figures(report, "run_eager")
    if not bench or not run or not run.get("images_per_s"):
        return []
    per_worker = bench["pipelines"]["train"]["per_worker_img_s"]
    needed = math.ceil(run["images_per_s"] / per_worker)
    return [f"Workers to feed run_eager's {run['images_per_s']:.0f} img/s at {per_worker:.0f} img/s per worker "
            f"(uint8 train pipeline): {needed}, of {report['cpus']} CPUs.", ""]


def torch_logs_lines(report: dict) -> List[str]:
    lines = []
    for step in report["steps"]:
        logs = step.get("torch_logs")
        if logs and logs["tail"]:
            lines += [f"## TORCH_LOGS={'recompiles,graph_breaks'} in {step['step']}: {logs['recompiles']} "
                      f"recompiles, {logs['graph_breaks']} graph breaks (the last lines)", "", "```",
                      *logs["tail"], "```", ""]
    return lines


def failures_lines(report: dict) -> List[str]:
    lines = []
    for step in report["steps"]:
        if step.get("rc") not in (0, None):
            lines += [f"## {step['step']}: {step['status']} (rc {step['rc']})", "", f"`{step['command']}`", "",
                      "```", step["output_tail"].rstrip(), "```", ""]
    return lines


def to_markdown(report: dict) -> str:
    title = (f"# GPU check: {report['device_name']}, {report['cpus']} CPUs ({report['cpu']}), torch "
             f"{report['torch']} (CUDA {report['cuda']}), timm {report['timm']}, Python {report['python']}")
    lines = [title, "", f"{report['wall_s']:.0f} s of steps (budget {report['budget_s']:.0f} s); started "
             f"{report['started_at']}{TINY_NOTE if report['tiny'] else ''}.", ""]
    lines += steps_table(report) + ceiling_lines(figures(report, "ceiling")) + models_lines(report)
    if figures(report, "throughput"):
        lines += throughput.to_markdown(figures(report, "throughput"))
    lines += runs_lines(report)
    if figures(report, "loader"):
        lines += loader.to_markdown(figures(report, "loader")) + workers_line(report)
    return "\n".join(lines + torch_logs_lines(report) + failures_lines(report))
