"""Fusion cost scaling: each fusion module alone at fixed widths, image size doubling, tokens growing.

The measurement itself is ``analysis.fusion_cost.measure`` (FlopCounterMode FLOPs, fastest of ``repeats``
single-thread forward passes); here the sizes double ``steps`` times and the log-log slope is fitted over
all of them, and over the last step alone (where the strategy is heading once tokens outnumber the width).
"""
import numpy as np

from analysis.fusion_cost import Branches, measure_all
from src.models import fusion_names


def log_slope(x, y) -> float:
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def bench_fusion(base_img: int = 32, steps: int = 4, branches: Branches = Branches(), repeats: int = 3) -> dict:
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
                     "flops_slope": log_slope(tokens, flops), "time_slope": log_slope(tokens, times),
                     "flops_slope_last": log_slope(tokens[-2:], flops[-2:]),
                     "time_slope_last": log_slope(tokens[-2:], times[-2:])}
    return out
