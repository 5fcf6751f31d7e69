"""Plots (matplotlib's object API: a ``Figure`` of its own, no pyplot, so importing this leaves a notebook's
backend alone), each saved as PNG and SVG: top-1 against GFLOPs and against params with
95% confidence intervals of the mean as error bars (one marker per group, n in the legend; the interval is
the one in the table: t over seeds, Clopper-Pearson over images for one run), and validation top-1 per epoch
per group (mean over seeds, shaded 95% t-interval where a group has two or more seeds). A flagged row (not
converged, seeds disagree) is drawn with an open marker and its flag in the legend. Rows named as a ``curve``
(the single-scale rows of a scales ablation) are joined by a dashed line in the two trade-off plots."""
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from analysis.stats.ablation import Ablation
from analysis.stats.flags import flag_kinds

MARKERS = "osD^v<>pP*Xh"


def group_label(row: pd.Series, factors: Sequence[str]) -> str:
    if list(factors) == ["fusion"]:
        return str(row["fusion"])
    return ", ".join(f"{factor}={row[factor]}" for factor in factors)


def new_axes():
    """A figure of one axes, outside pyplot (nothing to close, no backend switched)."""
    figure = Figure(figsize=(5.5, 4))
    return figure, figure.subplots()


def save(figure: Figure, out_dir: Path, stem: str) -> List[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
    for path in paths:
        figure.savefig(path, dpi=150, bbox_inches="tight")
    return paths


def interval_error(row: pd.Series) -> np.ndarray:
    """[[below], [above]] the mean for errorbar; zero where there is no interval."""
    below, above = row["top1_mean"] - row["top1_ci_low"], row["top1_ci_high"] - row["top1_mean"]
    return np.array([[0.0 if np.isnan(below) else below], [0.0 if np.isnan(above) else above]])


def plot_tradeoff(ablation: Ablation, x: str, x_label: str, out_dir: Path, stem: str, curve: Sequence[str] = ()):
    return save(tradeoff_figure(ablation, x, x_label, curve), out_dir, stem)


def tradeoff_figure(ablation: Ablation, x: str, x_label: str, curve: Sequence[str] = ()) -> Figure:
    """Top-1 against ``x``, one marker per row; the rows named in ``curve`` (labels) are also joined by a dashed
    line in order of ``x``, so that a row above or below that curve (one scale at growing cost) can be seen."""
    figure, axes = new_axes()
    on_curve = ablation.table[ablation.table["label"].isin(list(curve))].sort_values(x)
    if len(on_curve) >= 2:
        axes.plot(on_curve[x], on_curve["top1_mean"], linestyle="--", color="0.5", zorder=0,
                  label=f"curve: {', '.join(on_curve['label'])}")
    for index, row in ablation.table.iterrows():
        reference = " (ref)" if row["is_ref"] else ""
        flag = f" [{flag_kinds(row['flag'])}]" if row["flag"] else ""
        open_marker = {"markerfacecolor": "none"} if row["flag"] else {}  # flagged: not a result
        axes.errorbar(row[x], row["top1_mean"], yerr=interval_error(row), marker=MARKERS[index % len(MARKERS)],
                      capsize=4, linestyle="none", markersize=8, **open_marker,
                      label=f"{group_label(row, ablation.factors)}{reference} (n={row['n']}){flag}")
    axes.set_xlabel(x_label)
    axes.set_ylabel("top-1 (%), mean with 95% CI")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # beside the axes: it covers no row
    return figure


def t_band(curves: pd.DataFrame):
    """Per-epoch 95% t-interval of the mean over seeds (the mean itself where there is one seed)."""
    mean, n = curves.mean(), curves.count()
    sem = (curves.std() / np.sqrt(n)).fillna(0.0)
    low, high = stats.t.interval(0.95, np.maximum(n - 1, 1), loc=mean, scale=sem.where(sem > 0, 1e-12))
    return mean, pd.Series(low, index=mean.index), pd.Series(high, index=mean.index)


def plot_curves(runs: pd.DataFrame, factors: Sequence[str], out_dir: Path, stem: str = "val_curves"):
    figure, axes = new_axes()
    keyed = runs.assign(**{factor: runs[factor].astype(str) for factor in factors})
    for index, (_, group) in enumerate(keyed.groupby(list(factors), sort=True)):
        curves = pd.DataFrame([{(epoch["epoch"]): epoch["top1"] for epoch in history}
                               for history in group["history"]])
        mean, low, high = t_band(curves)
        epochs = mean.index.to_numpy() + 1
        line, = axes.plot(epochs, mean.to_numpy(), marker=MARKERS[index % len(MARKERS)],
                          label=f"{group_label(group.iloc[0], factors)} (n={len(group)})")
        axes.fill_between(epochs, low.to_numpy(), high.to_numpy(), alpha=0.2, color=line.get_color())
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation top-1 (%), mean with 95% CI")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return save(figure, out_dir, stem)


def write_plots(runs: pd.DataFrame, ablation: Ablation, out_dir: Path,
                curve: Sequence[str] = ()) -> Dict[str, List[Path]]:
    return {"top1_vs_gflops": plot_tradeoff(ablation, "gmacs", "FLOPs (G, multiply-accumulates)", out_dir,
                                            "top1_vs_gflops", curve),
            "top1_vs_params": plot_tradeoff(ablation, "params_m", "params (M)", out_dir, "top1_vs_params", curve),
            "val_curves": plot_curves(runs, ablation.factors, out_dir)}
