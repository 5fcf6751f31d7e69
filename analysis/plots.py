"""Plots (matplotlib, Agg backend), each saved as PNG and SVG: top-1 against GFLOPs and against params with
error bars over seeds (one marker per group), and validation top-1 per epoch per group (mean over seeds,
shaded +-1 std)."""
from pathlib import Path
from typing import Dict, List, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

MARKERS = "osD^v<>pP*Xh"


def group_label(row: pd.Series, factors: Sequence[str]) -> str:
    if list(factors) == ["fusion"]:
        return str(row["fusion"])
    return ", ".join(f"{factor}={row[factor]}" for factor in factors)


def save(figure, out_dir: Path, stem: str) -> List[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
    for path in paths:
        figure.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(figure)
    return paths


def plot_tradeoff(table: pd.DataFrame, factors: Sequence[str], x: str, x_label: str, out_dir: Path, stem: str):
    figure, axes = plt.subplots(figsize=(5.5, 4))
    for index, row in table.iterrows():
        std = 0.0 if np.isnan(row["top1_std"]) else row["top1_std"]
        axes.errorbar(row[x], row["top1_mean"], yerr=std, marker=MARKERS[index % len(MARKERS)], capsize=4,
                      linestyle="none", markersize=8, label=f"{group_label(row, factors)} (n={row['n']})")
    axes.set_xlabel(x_label)
    axes.set_ylabel("top-1 (%), mean ± std over seeds")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return save(figure, out_dir, stem)


def plot_curves(runs: pd.DataFrame, factors: Sequence[str], out_dir: Path, stem: str = "val_curves"):
    figure, axes = plt.subplots(figsize=(5.5, 4))
    keyed = runs.assign(**{factor: runs[factor].astype(str) for factor in factors})
    for index, (_, group) in enumerate(keyed.groupby(list(factors), sort=True)):
        curves = pd.DataFrame([{(epoch["epoch"]): epoch["top1"] for epoch in history}
                               for history in group["history"]])
        mean, std = curves.mean(), curves.std().fillna(0.0)
        epochs = mean.index.to_numpy() + 1
        line, = axes.plot(epochs, mean.to_numpy(), marker=MARKERS[index % len(MARKERS)],
                          label=f"{group_label(group.iloc[0], factors)} (n={len(group)})")
        axes.fill_between(epochs, (mean - std).to_numpy(), (mean + std).to_numpy(), alpha=0.2,
                          color=line.get_color())
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation top-1 (%)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return save(figure, out_dir, stem)


def write_plots(runs: pd.DataFrame, table: pd.DataFrame, factors: Sequence[str],
                out_dir: Path) -> Dict[str, List[Path]]:
    return {"top1_vs_gflops": plot_tradeoff(table, factors, "gmacs", "FLOPs (G, multiply-accumulates)", out_dir,
                                            "top1_vs_gflops"),
            "top1_vs_params": plot_tradeoff(table, factors, "params_m", "params (M)", out_dir, "top1_vs_params"),
            "val_curves": plot_curves(runs, factors, out_dir)}
