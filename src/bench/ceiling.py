"""The card's matmul ceiling: ``python -m src.bench.ceiling --n 8192 --out ceiling.json``.

One n x n x n bf16 product, timed over several back-to-back products after untimed warm-up ones. At n = 8192 a
product is 1.1 TFLOP, a couple of milliseconds on an H100: long enough that launch overhead and the clock's
resolution vanish, which a single 2048^3 product (17 GFLOP, some tens of microseconds) does not. On CUDA the
products are timed by CUDA events on the stream (what the GPU did, not when the host got back); on the CPU by
the host clock around the loop. A model's achieved FLOP/s over this rate is the fraction of the card it uses."""
import argparse
import json
import statistics
import time
from pathlib import Path
from typing import List, Optional

import torch

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def _cuda_seconds(product, repeats: int) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        product()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def _host_seconds(product, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        product()
    return time.perf_counter() - start


def matmul_rounds(device: str, n: int, dtype: str = "bf16", warmup: int = 3, repeats: int = 10,
                  rounds: int = 3) -> List[float]:
    """FLOP/s of each round of ``repeats`` back-to-back n^3 products in ``dtype``, after ``warmup`` untimed ones."""
    a = torch.randn(n, n, device=device, dtype=DTYPES[dtype])
    b = torch.randn(n, n, device=device, dtype=DTYPES[dtype])
    out = torch.empty(n, n, device=device, dtype=DTYPES[dtype])

    def product():
        torch.matmul(a, b, out=out)  # into one buffer: the allocator stays out of the timing

    on_cuda = torch.device(device).type == "cuda"
    seconds = _cuda_seconds if on_cuda else _host_seconds
    for _ in range(warmup):
        product()
    if on_cuda:
        torch.cuda.synchronize(device)
    return [2 * n**3 * repeats / seconds(product, repeats) for _ in range(rounds)]


def measure(device: str, n: int, dtype: str = "bf16", warmup: int = 3, repeats: int = 10, rounds: int = 3) -> dict:
    rates = matmul_rounds(device, n, dtype, warmup, repeats, rounds)
    on_cuda = torch.device(device).type == "cuda"
    return {"device": device, "device_name": torch.cuda.get_device_name(device) if on_cuda else "CPU",
            "n": n, "dtype": dtype, "warmup": warmup, "repeats": repeats, "rounds": rounds,
            "clock": "CUDA events" if on_cuda else "host perf_counter", "tflops_rounds": [r / 1e12 for r in rates],
            "tflops": statistics.median(rates) / 1e12, "torch": torch.__version__}


def main(argv: Optional[List[str]] = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m src.bench.ceiling", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n", type=int, default=8192)
    parser.add_argument("--dtype", choices=list(DTYPES), default="bf16")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10, help="products timed together in one round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median round is reported")
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    args = parser.parse_args(argv)
    result = measure(args.device, args.n, args.dtype, args.warmup, args.repeats, args.rounds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"{args.dtype} {args.n}^3 matmul on {result['device_name']}: {result['tflops']:.1f} TFLOP/s")
    return result


if __name__ == "__main__":
    main()
