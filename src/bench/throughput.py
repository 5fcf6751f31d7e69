"""Inference throughput in the paper's protocol (Tables 2 and 4: batch 64, one V100, the mean over 100 iterations), in
fp32 (the paper's) and bf16 autocast, for a paper row's model on the device at hand:
``python -m src.bench --parts throughput --row DeiT-S [--throughput-dtype fp32,bf16]``.

The row's model is built from its overrides in ``analysis/paper/crossvit_paper.yaml`` through the config tree, as
``python -m analysis.paper`` builds it. The paper's figure is shown beside ours only when ours comes from a GPU; a
CPU figure is ours alone (a V100's images/s says nothing about a CPU's)."""
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
# Read as data: src never imports analysis (pyproject's import contracts), and the transcription lives there.
PAPER_FILE = ROOT / "analysis" / "paper" / "crossvit_paper.yaml"
PAPER_BATCH = 64
PAPER_ITERATIONS = 100
PAPER_DEVICE = "V100"


def paper_rows_with_throughput(path: Path = PAPER_FILE) -> Dict[str, dict]:
    """Row name -> its transcription, for every row the paper prints a throughput for."""
    tables = yaml.safe_load(path.read_text())["tables"]
    return {row["row"]: row for table in tables for row in table["rows"] if row.get("throughput") is not None}


def paper_row(name: str) -> dict:
    rows = paper_rows_with_throughput()
    if name not in rows:
        raise ValueError(f"no throughput for row {name!r} in {PAPER_FILE.name}: pick one of {', '.join(rows)}")
    return rows[name]


def build_row_model(overrides: List[str]) -> torch.nn.Module:
    """The row's model with 1000 classes, from the harness's config tree (Hydra loads only when a row is run)."""
    from hydra import compose, initialize_config_dir

    from src.config import register_configs
    from src.train.build import build_model

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return build_model(compose("config", overrides=[*overrides, "data.num_classes=1000"]))


@contextmanager
def strict_fp32():
    """The paper's V100 has no TF32, which torch would use on newer GPUs for convolutions (cuDNN's default)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


DTYPES = {"fp32": None, "bf16": torch.bfloat16}  # the paper's is fp32; bf16 autocast is what GPUs train in now


@torch.inference_mode()
def images_per_s(model: torch.nn.Module, images: torch.Tensor, iterations: int, warmup: int,
                 autocast_dtype: Optional[torch.dtype] = None) -> float:
    """The mean over ``iterations`` back-to-back forward passes, as the paper averages its 100: one clock around
    the loop (``torch.utils.benchmark.Timer.timeit`` would add warm-up passes of its own); ``autocast_dtype``:
    under autocast to it (None: full precision)."""
    with torch.autocast(images.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        for _ in range(warmup):
            model(images)
        _synchronize(images.device)
        start = time.perf_counter()
        for _ in range(iterations):
            model(images)
        _synchronize(images.device)
    return images.shape[0] * iterations / (time.perf_counter() - start)


def paper_beside(device: torch.device, paper_img_s: float) -> Tuple[Optional[float], str]:
    """The paper's figure to show beside ours (None on a CPU) and what the comparison is."""
    if device.type == "cuda":
        return paper_img_s, (f"ours on {torch.cuda.get_device_name(device)} beside the paper's {PAPER_DEVICE} "
                             f"(another GPU: a ratio to read, not a check)")
    return None, f"ours alone: a {device.type.upper()} figure, not comparable with the paper's {PAPER_DEVICE}"


def bench_throughput(row: str, device: str = "cpu", batch: int = PAPER_BATCH, iterations: int = PAPER_ITERATIONS,
                     warmup: int = 10, dtype: str = "fp32") -> dict:
    if dtype not in DTYPES:
        raise ValueError(f"throughput dtype {dtype!r}: pick from {', '.join(DTYPES)}")
    spec = paper_row(row)
    target = torch.device(device)
    model = build_row_model(spec["overrides"]).to(target).eval()
    images = torch.randn(batch, 3, model.img_size, model.img_size, device=target)
    with strict_fp32():
        ours = images_per_s(model, images, iterations, warmup, DTYPES[dtype])
    paper, label = paper_beside(target, spec["throughput"])
    if dtype != "fp32":
        paper, label = None, f"ours alone: {dtype} autocast, where the paper measured fp32"
    return {"row": row, "model": " ".join(spec["overrides"]), "device": str(target), "dtype": dtype,
            "threads": torch.get_num_threads(), "batch": batch, "iterations": iterations, "warmup": warmup,
            "ours_img_s": ours, "paper_img_s": paper, "label": label}


def to_markdown(results: List[dict]) -> List[str]:
    first = results[0]
    lines = [f"## Throughput, the paper's protocol (inference, batch {first['batch']}, the mean of "
             f"{first['iterations']} iterations after {first['warmup']} warm-up; the paper's is fp32)", "",
             f"| row | our model | device | dtype | ours img/s | paper img/s ({PAPER_DEVICE}) | reading |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        paper = "-" if r["paper_img_s"] is None else f"{r['paper_img_s']:.0f}"
        lines.append(f"| {r['row']} | {r['model']} | {r['device']} ({r['threads']} threads) | {r['dtype']} | "
                     f"{r['ours_img_s']:.1f} | {paper} | {r['label']} |")
    return lines + [""]
