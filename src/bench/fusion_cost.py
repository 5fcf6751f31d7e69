"""Cost of each fusion module alone as the image (so the number of tokens) grows: FLOPs counted with
torch's FlopCounterMode (reported as GMACs, like ``src.models.count_flops``) and measured forward time.

Each strategy is built with ``build_fusion`` for two branches (by default fusionvit_micro_32's widths
48/96, heads 3, patches 4/8) and fed ``[B=1, 1 + N_i, C_i]`` zeros for image sizes 32..256, so N = N_s + N_l
runs from 80 to 5,120 tokens. How each cost grows is one number, ``cost_slope``: cross-attention (one CLS query per
branch) grows linearly (slope ~1), all-attention (every token attends to every token) quadratically (~2).

``python -m src.bench.fusion_cost [--out DIR]`` writes ``fusion_cost.csv`` and the plot (PNG + SVG) and prints the
slopes; ``python -m src.bench --parts fusion`` reports the same slopes over four doubling sizes.
"""
import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

import src.models  # noqa: F401 - counts CPU attention FLOPs (src.models.complexity)
from src.bench.speed import timed_seconds
from src.models.fusion import BranchSpec, FusionOptions, build_fusion, fusion_names, fusion_parameters
from src.plot_style import FULL_WIDTH, new_figure, paper_style, row_style, save


@dataclass(frozen=True)
class Branches:
    """Two branches: widths, heads and patch sizes (S first)."""
    dims: Sequence[int] = (48, 96)
    heads: Sequence[int] = (3, 3)
    patch_sizes: Sequence[int] = (4, 8)


def build(name: str, image_size: int, branches: Branches) -> torch.nn.Module:
    specs = []
    for dim, heads, patch in zip(branches.dims, branches.heads, branches.patch_sizes):
        if image_size % patch:
            raise ValueError(f"patch size {patch} does not divide image size {image_size}: pick image sizes "
                             f"that are multiples of {max(branches.patch_sizes)}")
        specs.append(BranchSpec(dim, heads, (image_size // patch, image_size // patch)))
    layers = {"layers": 1} if "layers" in fusion_parameters(name) else {}
    return build_fusion(name, specs, FusionOptions(), **layers).eval()


def tokens_for(image_size: int, branches: Branches) -> List[torch.Tensor]:
    return [torch.zeros(1, 1 + (image_size // patch) ** 2, dim)
            for dim, patch in zip(branches.dims, branches.patch_sizes)]


@torch.no_grad()
def measure(name: str, image_size: int, branches: Branches, repeats: int = 5) -> dict:
    module = build(name, image_size, branches)
    tokens = tokens_for(image_size, branches)
    with FlopCounterMode(display=False) as counter:
        module(tokens)
    # one thread: on a shared CPU, thread hand-offs swamp these millisecond kernels
    times = [timed_seconds(lambda: module(tokens), num_threads=1) for _ in range(repeats)]
    return {"fusion": name, "image_size": image_size, "tokens": sum(t.shape[1] - 1 for t in tokens),
            "gmacs": counter.get_total_flops() / 2e9, "time_ms": 1e3 * min(times),
            "params": sum(p.numel() for p in module.parameters())}


DEFAULT_BRANCHES = Branches()


def measure_all(image_sizes: Sequence[int] = (32, 64, 96, 128, 160, 192, 224, 256),
                fusions: Sequence[str] = None, branches: Branches = DEFAULT_BRANCHES, repeats: int = 5) -> pd.DataFrame:
    """One row per (strategy, image size): tokens, GMACs, the fastest of ``repeats`` forward times, params."""
    fusions = fusions or fusion_names()
    return pd.DataFrame([measure(name, size, branches, repeats) for name in fusions for size in image_sizes])


def cost_slope(tokens: Sequence[float], cost: Sequence[float]) -> float:
    """The fusion-cost slope: the least-squares slope of log(cost) on log(tokens), fitted over the larger half
    of the measured sizes (of four sizes that double, the last two: the last doubling). 1 is linear, 2
    quadratic. The small sizes are left out because there the costs that grow more slowly than
    the strategy's own term (CLS projections, per-token linear layers) still dominate. NaN with fewer than two
    positive costs in that half (the identity costs nothing)."""
    tokens, cost = np.asarray(tokens, dtype=float), np.asarray(cost, dtype=float)
    larger_half = np.argsort(tokens)[len(tokens) // 2:]
    x, y = tokens[larger_half], cost[larger_half]
    positive = y > 0
    if positive.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[positive]), np.log(y[positive]), 1)[0])


def slopes(costs: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: ``cost_slope`` of GMACs and of time (the fastest of ``repeats`` forward passes on one
    thread, the least disturbed by other work). A strategy that costs no FLOPs (``none``) has no slope."""
    rows = []
    for name, group in costs.groupby("fusion", sort=True):
        counted = group[group["gmacs"] > 0]
        rows.append({"fusion": name, **{f"{column}_slope": cost_slope(counted["tokens"], counted[column])
                                        for column in ("gmacs", "time_ms")}})
    return pd.DataFrame(rows)


def plot_costs(costs: pd.DataFrame, fitted: pd.DataFrame, out_dir: Path, stem: str = "fusion_cost") -> List[Path]:
    """GMACs and time against tokens, log-log, one line per strategy with its slope, each fusion in its colour and
    marker of every figure (``src.plot_style``); saved as PNG, PDF and SVG. Matplotlib's object API (no pyplot): a
    notebook's backend stays as it was."""
    with paper_style():
        figure = new_figure(FULL_WIDTH, 2.8, ncols=2)
        axes = figure.axes
        for name, group in costs.groupby("fusion", sort=True):
            slope, style = fitted.set_index("fusion").loc[name], row_style(name)
            for axis, column, title in ((axes[0], "gmacs", "GMACs"), (axes[1], "time_ms", "time (ms)")):
                positive = group[(group[column] > 0) & (group["gmacs"] > 0)]
                if positive.empty:
                    continue
                axis.loglog(positive["tokens"], positive[column], marker=style.marker, color=style.color,
                            markersize=3, label=f"{name} (slope {slope[f'{column}_slope']:.2f})")
                axis.set_xlabel("tokens N = N_s + N_l")
                axis.set_ylabel(f"fusion {title}, one image")
                axis.grid(alpha=0.3, which="both")
                axis.legend(frameon=False)
    return save(figure, out_dir, stem)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.bench.fusion_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("analysis_out/fusion_cost"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 96, 128, 160, 192, 224, 256])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    costs = measure_all(args.sizes, repeats=args.repeats)
    fitted = slopes(costs)
    args.out.mkdir(parents=True, exist_ok=True)
    costs.to_csv(args.out / "fusion_cost.csv", index=False)
    plot_costs(costs, fitted, args.out)
    print(fitted.to_markdown(index=False, floatfmt=".2f"))
    print(f"wrote {args.out}/fusion_cost.{{csv,png,svg}}")


if __name__ == "__main__":
    main()
