"""Sweep throughput: the same few ``make run`` jobs (``+experiment=make_run``, one torch thread each) run serially
with Hydra's basic launcher, one job after another in one process, and in parallel with ``hydra/launcher=parallel``
(one worker process per core), each as a real ``python -m src.run -m`` into a temporary folder. Both give the same
per-epoch numbers (checked here too), so only the wall time differs; it includes each process's start-up (the
Hydra process, and the parallel workers' imports), as ``make run`` pays it."""
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from joblib import cpu_count

from src.train.record_io import RESULTS_FILE, read_results

LAUNCHERS = {"serial": "hydra/launcher=basic", "parallel": "hydra/launcher=parallel"}


def run_sweep(mode: str, grid: List[str], epochs: int, sweep_dir: Path) -> Dict:
    """One sweep in a subprocess: its wall seconds and each job's results (all must complete)."""
    command = [sys.executable, "-m", "src.run", "-m", "+experiment=make_run", LAUNCHERS[mode], *grid,
               f"train.epochs={epochs}", f"hydra.sweep.dir={sweep_dir}"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True,
                          env=dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true"))
    wall_s = time.perf_counter() - started
    runs = [read_results(path.parent) for path in sorted(sweep_dir.glob(f"*/{RESULTS_FILE}"))]
    if done.returncode != 0 or not runs or any(run["status"] != "completed" for run in runs):
        raise RuntimeError(f"the {mode} sweep failed ({' '.join(command)}):\n{done.stderr[-3000:]}")
    return {"wall_s": wall_s, "runs": runs}


def epoch_numbers(runs: List[Dict]) -> Dict:
    """Each job's per-epoch losses and top-1, by its folder (make_run's: named after the job's overrides)."""
    return {Path(run["run_dir"]).name: [(row["train_loss"], row["val_loss"], row["top1"]) for row in run["history"]]
            for run in runs}


def summary(wall_s: float, runs: List[Dict], workers: int) -> Dict:
    return {"workers": workers, "jobs": len(runs), "wall_s": wall_s, "jobs_per_min": 60 * len(runs) / wall_s,
            "mean_job_s": statistics.mean(run["wall_time_s"] for run in runs),
            "threads": sorted({run["provenance"]["threads"] for run in runs})}


def bench_sweep(grid: str = "fusion=none,cross seed=0,1", epochs: int = 2) -> Dict:
    """``grid``: the sweep's overrides (default 4 jobs); serial first, then parallel on ``cpu_count()`` workers
    (joblib's count, which ``n_jobs: -1`` uses)."""
    overrides = grid.split()
    with tempfile.TemporaryDirectory() as tmp:
        serial = run_sweep("serial", overrides, epochs, Path(tmp) / "serial")
        parallel = run_sweep("parallel", overrides, epochs, Path(tmp) / "parallel")
    result = {"grid": grid, "epochs": epochs, "cores": cpu_count(),
              "serial": summary(serial["wall_s"], serial["runs"], 1),
              "parallel": summary(parallel["wall_s"], parallel["runs"], min(cpu_count(), len(parallel["runs"]))),
              "same_numbers": epoch_numbers(serial["runs"]) == epoch_numbers(parallel["runs"])}
    result["ratio"] = result["parallel"]["jobs_per_min"] / result["serial"]["jobs_per_min"]
    return result


def sweep_targets(s: Dict) -> List[tuple]:
    """(target, measured, met): with two cores or more, the parallel sweep must not be slower than the serial one;
    the parallel workers' start-up is paid once each, so the ratio grows with the jobs' length."""
    if s["parallel"]["workers"] < 2:
        return []
    name = (f"sweep parallel/serial throughput >= 1.0 ({s['parallel']['jobs']} jobs, {s['epochs']} epochs, "
            f"{s['parallel']['workers']} workers)")
    return [(name, s["ratio"], s["ratio"] >= 1.0)]


def sweep_markdown(s: Dict) -> List[str]:
    lines = [f"## Sweep throughput: make_run jobs `{s['grid']}`, {s['epochs']} epochs, {s['cores']} cores", "",
             "| launcher | workers | jobs | wall s | jobs/min | mean job s | threads per job |",
             "|---|---|---|---|---|---|---|"]
    for mode in ("serial", "parallel"):
        m = s[mode]
        lines.append(f"| {mode} ({LAUNCHERS[mode]}) | {m['workers']} | {m['jobs']} | {m['wall_s']:.1f} | "
                     f"{m['jobs_per_min']:.2f} | {m['mean_job_s']:.1f} | {', '.join(map(str, m['threads']))} |")
    return lines + ["", f"Parallel / serial throughput: {s['ratio']:.2f}; the same per-epoch numbers: "
                        f"{'yes' if s['same_numbers'] else 'NO'}.", ""]
