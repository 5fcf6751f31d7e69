"""Ours vs timm over variants and precisions, one line per configuration as soon as it is measured:
``python -m src.bench.model_matrix --variants fusionvit_9_240,fusionvit_small_240 --precisions bf16,fp32
--compile on --out models.jsonl``.

Each configuration is ``src.bench.speed.bench_models`` (train and infer, ours and timm interleaved, peak memory per
model and mode). Configurations run precision-major in the order given, so the first ones are those most wanted;
each is appended to ``--out`` (JSON lines) when done, so a run stopped at its time limit keeps what it finished.
fp32 is torch's default on CUDA: TF32 off for matmuls, on for cuDNN's convolutions (the patch embedding); the flags
are recorded with each line."""
import argparse
import json
import time
from pathlib import Path
from typing import List, Optional

import timm
import torch

from src.bench.speed import bench_models

PRECISIONS = {"fp32": False, "bf16": True}  # name -> bf16 autocast


def timm_name(variant: str) -> str:
    """``fusionvit_9_240`` -> ``crossvit_9_240``: timm's registered model our variant reproduces (a variant timm
    does not have, e.g. the CPU proxies: timm's ``CrossVit`` class with that variant's configuration)."""
    name = variant.replace("fusionvit_", "crossvit_", 1)
    return name if timm.is_model(name) else f"CrossVit({variant})"


def tf32_flags() -> dict:
    return {"matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}


def run_matrix(variants: List[str], precisions: List[str], compile_: bool, batch: int, repeats: int, warmup: int,
               device: str, out: Path, backend: str = "inductor") -> List[dict]:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("")  # this run's configurations only
    done = []
    for precision in precisions:
        for variant in variants:
            started = time.perf_counter()
            result = bench_models(variant, batch, repeats, warmup, compile_, device, amp=PRECISIONS[precision],
                                  backend=backend)
            result.update(precision=precision, timm_model=timm_name(variant), seconds=time.perf_counter() - started,
                          **tf32_flags())
            with out.open("a") as lines:
                lines.write(json.dumps(result) + "\n")
            print(f"{variant} vs {result['timm_model']}, {precision}, compile={compile_}: train "
                  f"{result['train']['ours_img_s']:.0f} vs {result['train']['timm_img_s']:.0f} img/s, infer "
                  f"{result['infer']['ours_img_s']:.0f} vs {result['infer']['timm_img_s']:.0f} img/s, peak "
                  f"{result['peak_memory_mb']:.0f} MiB ({result['seconds']:.0f} s)", flush=True)
            done.append(result)
            if compile_:  # each configuration compiles afresh: none meets dynamo's recompile limit for another's
                torch._dynamo.reset()
    return done


def read_matrix(path: Path) -> List[dict]:
    """The configurations a run finished (a line cut by a kill is dropped)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def main(argv: Optional[List[str]] = None) -> List[dict]:
    parser = argparse.ArgumentParser(prog="python -m src.bench.model_matrix", description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="fusionvit_9_240,fusionvit_small_240")
    parser.add_argument("--precisions", default="bf16,fp32", help=f"any of {', '.join(PRECISIONS)}, in order")
    parser.add_argument("--compile", choices=["off", "on"], default="off")
    parser.add_argument("--backend", default="inductor", help="torch.compile's backend")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model and mode (compiling here)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, required=True, help="the JSON-lines file to append to")
    args = parser.parse_args(argv)
    precisions = args.precisions.split(",")
    unknown = [name for name in precisions if name not in PRECISIONS]
    if unknown:
        parser.error(f"--precisions {','.join(unknown)}: pick from {', '.join(PRECISIONS)}")
    return run_matrix(args.variants.split(","), precisions, args.compile == "on", args.batch, args.repeats,
                      args.warmup, args.device, args.out, args.backend)


if __name__ == "__main__":
    main()
