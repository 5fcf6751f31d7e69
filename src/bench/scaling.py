"""Fusion cost scaling: each fusion module alone at fixed widths, image size doubling, tokens growing.

The measurement is ``src.bench.fusion_cost.measure`` (FlopCounterMode FLOPs, fastest of ``repeats``
single-thread forward passes) and the slope is ``src.bench.fusion_cost.cost_slope``, the same number
``python -m src.bench.fusion_cost`` prints; here the sizes double ``steps`` times.
"""
from src.bench.fusion_cost import DEFAULT_BRANCHES, Branches, cost_slope, measure_all
from src.models import fusion_names


def bench_fusion(base_img: int = 32, steps: int = 4, branches: Branches = DEFAULT_BRANCHES, repeats: int = 3) -> dict:
    sizes = [base_img * 2**step for step in range(steps)]
    fusions = [name for name in fusion_names() if name != "none"]  # the identity costs nothing to fit
    costs = measure_all(sizes, fusions, branches, repeats)
    out = {}
    for name, group in costs.groupby("fusion", sort=True):
        group = group.sort_values("tokens")
        rows = [{"img": int(r.image_size), "tokens": int(r.tokens), "flops": 2e9 * r.gmacs, "time_s": r.time_ms / 1e3}
                for r in group.itertuples()]
        tokens, flops, times = ([row[k] for row in rows] for k in ("tokens", "flops", "time_s"))
        out[name] = {"widths": list(branches.dims), "patch_sizes": list(branches.patch_sizes), "rows": rows,
                     "flops_slope": cost_slope(tokens, flops), "time_slope": cost_slope(tokens, times)}
    return out
