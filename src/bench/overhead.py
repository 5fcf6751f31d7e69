"""Harness overhead: images/s of a real `src.run` epoch on synthetic data vs the bare training step."""
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import timm

import src.models  # noqa: F401
from src.bench.speed import make_steps, timed_seconds


def bare_train_img_s(variant, batch, repeats=5, warmup=2, num_classes=10, device="cpu"):
    """Forward+backward+AdamW on one fixed batch, no data loading, no eval, median of repeats."""
    model = timm.create_model(variant, fusion="cross", num_classes=num_classes).to(device)
    train, _ = make_steps(model, model.img_size, batch, device, device.startswith("cuda"), False, num_classes, lr=1e-3)
    times = [timed_seconds(train) for _ in range(warmup + repeats)][warmup:]
    return batch / statistics.median(times)


def harness_img_s(variant, batch, epochs=2, num_train=512, threads=None, device="cpu"):
    """Runs `python -m src.run` and reads images_per_s of its last epoch (training epoch as the harness times it)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "src.run", f"model={variant}", "fusion=cross", "data=synthetic",
               "logger=none", "sched.warmup_epochs=0", f"train.epochs={epochs}", f"train.batch_size={batch}",
               f"train.device={device}",
               f"data.num_train={num_train}", f"hydra.run.dir={tmp}/run", "train.progress=log"]
        if threads:
            cmd.append(f"train.threads={threads}")
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"the harness run failed ({' '.join(cmd)}):\n{done.stderr[-3000:]}")
        res = json.loads((Path(tmp) / "run" / "results.json").read_text())
    return res["history"][-1]["images_per_s"], res["status"]


def bench_overhead(variant="fusionvit_micro_32", batch=32, epochs=2, num_train=512, threads=None, device="cpu"):
    harness, status = harness_img_s(variant, batch, epochs, num_train, threads, device)
    bare = bare_train_img_s(variant, batch, device=device)
    return {"variant": variant, "batch": batch, "threads": threads, "harness_status": status, "harness_img_s": harness,
            "bare_img_s": bare, "ratio": harness / bare}
