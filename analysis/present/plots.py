"""The figures of an ablation (matplotlib's object API: a ``Figure`` of its own, no pyplot, so importing this leaves
a notebook's backend alone), each saved as PNG, PDF and SVG at a paper's column width (``style``), every row in its
fixed colour and marker and in one order (the reference first, then by effect):

- ``forest``, the headline: each row's difference to the reference with its 95% interval (the paired one where the
  rows share seeds: what the tests are about, not the overlap of two unpaired intervals), the equivalence band
  where a margin is declared, and the row's verdict beside it.
- ``top1_vs_gflops`` / ``top1_vs_params``: top-1 (mean with its 95% interval) against cost, every row labelled
  beside its point (labels kept apart by adjustText), rows at the same cost spread a little sideways so that no
  marker hides another, the Pareto front (no row both cheaper and better) marked; FLOPs in M or G
  multiply-accumulates, whichever reads. Rows named as a ``curve`` (the single-scale rows of a scales ablation) are
  joined by a dashed line.
- ``val_curves``: validation top-1 per epoch (whole epochs, counted from 1), mean over seeds, and a second panel on
  the last epochs, where the rows part; a band (95% interval of the mean over seeds) only for rows with two or more
  seeds, and the legend says so.
A flagged row (not converged, seeds disagree) is drawn open, with its flag in its label."""
import logging
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pandas as pd
from adjustText import adjust_text
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy import stats

from analysis.stats.ablation import Ablation
from analysis.stats.compare import MCNEMAR
from analysis.stats.flags import flag_kinds
from analysis.stats.verdict import EQUIVALENT, RESOLVED
from src.plot_style import COLUMN_WIDTH, FULL_WIDTH, figure_order, new_figure, paper_style, row_style, save

# adjustText says so when a label is wider than the gap it has, a varying number of times a figure: the label is
# drawn all the same, and the line would make a notebook's stored outputs differ run to run.
logging.getLogger("adjustText").setLevel(logging.ERROR)


def interval_error(low: float, mean: float, high: float) -> np.ndarray:
    """[[below], [above]] ``mean`` for errorbar; zero where there is no interval."""
    below, above = mean - low, high - mean
    return np.array([[0.0 if np.isnan(below) else below], [0.0 if np.isnan(above) else above]])


def marker_kwargs(row: pd.Series) -> Dict[str, object]:
    style = row_style(row["label"])
    open_marker = {"markerfacecolor": "white"} if row["flag"] else {}  # flagged: not a result
    return {"marker": style.marker, "color": style.color, **open_marker}


def verdict_text(row: pd.Series) -> str:
    if row["is_ref"]:
        return "reference"
    if row["flag"]:
        return f"flagged: {flag_kinds(row['flag'])}"
    verdict = row.get("verdict", "")
    if verdict not in (*RESOLVED, "inconclusive"):
        return "not compared"
    resolved_at, seeds = row.get("resolved_at"), row.get("n")
    earlier = pd.notna(resolved_at) and resolved_at < seeds
    margin = f" (±{row['margin']:g})" if verdict == EQUIVALENT else ""
    return f"{verdict}{margin}" + (f" at {resolved_at:g} seeds" if earlier else "")


def forest_figure(ablation: Ablation) -> Figure:
    """Each row's Δ vs the reference with its 95% interval, the equivalence band, the verdict beside it."""
    table = ablation.table
    order = figure_order(table)
    with paper_style():
        figure = new_figure(COLUMN_WIDTH, 0.8 + 0.28 * len(order))
        axes = figure.axes[0]
        if ablation.margin:
            axes.axvspan(-ablation.margin, ablation.margin, color="0.88", zorder=0,
                         label=f"equivalence margin ±{ablation.margin:g}")
        axes.axvline(0.0, color="0.4", linewidth=0.8, zorder=1)
        for position, index in enumerate(order):
            row = table.loc[index]
            y = -position
            if not row["flag"] and pd.notna(row["diff_vs_ref"]):
                axes.errorbar(row["diff_vs_ref"], y, xerr=interval_error(row["diff_ci_low"], row["diff_vs_ref"],
                                                                         row["diff_ci_high"]),
                              capsize=2.5, markersize=5, linestyle="none", **marker_kwargs(row))
            axes.text(1.02, y, verdict_text(row), transform=axes.get_yaxis_transform(), va="center", fontsize=7)
        axes.set_yticks([-position for position in range(len(order))],
                        [str(table.loc[index, "label"]) for index in order])
        axes.set_ylim(-len(order) + 0.4, 0.6)
        tests = set(table.loc[~table["is_ref"], "test"])
        over = "over images" if tests == {MCNEMAR} else "paired over seeds" if "paired t" in tests else "95% CI"
        axes.set_xlabel(f"Δ top-1 vs {ablation.reference} (points), 95% CI"
                        + ("" if over == "95% CI" else f", {over}"))
        axes.grid(axis="x", alpha=0.3)
        if ablation.margin:
            axes.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), frameon=False, borderaxespad=0.2)
    return figure


def cost_unit(values: pd.Series, column: str) -> Tuple[float, str]:
    """(scale, axis label) for a cost column: GMACs shown in M where they are under 0.1 G."""
    if column == "gmacs":
        if values.max() < 0.1:
            return 1e3, "FLOPs (M multiply-accumulates)"
        return 1.0, "FLOPs (G multiply-accumulates)"
    return 1.0, "params (M)"


def dodged(x: np.ndarray, order: List[int], span: float) -> Dict[int, float]:
    """Rows at (nearly) the same cost spread sideways by a few percent of the axis, in figure order, so that no
    marker and error bar sits on another."""
    shifted, step = {}, 0.025 * (span or 1.0)
    for index in order:
        same = [other for other in shifted if abs(x[other] - x[index]) < step]
        shifted[index] = x[index] + step * ((len(same) + 1) // 2) * (1 if len(same) % 2 else -1) if same \
            else x[index]
    return shifted


def pareto_front(cost: pd.Series, top1: pd.Series) -> List[int]:
    """The rows no other row beats at no more cost (cheapest first)."""
    front, best = [], -np.inf
    for index in cost.sort_values(kind="stable").index:
        if top1[index] > best:
            front.append(index)
            best = top1[index]
    return front


def tradeoff_figure(ablation: Ablation, column: str, curve: Sequence[str] = ()) -> Figure:
    table = ablation.table
    order = [index for index in figure_order(table) if pd.notna(table.loc[index, column])]
    scale, x_label = cost_unit(table[column].dropna(), column)
    x = {index: table.loc[index, column] * scale for index in order}
    span = (max(x.values()) - min(x.values())) if x else 1.0
    shown_x = dodged(x, order, span)
    with paper_style():
        figure = new_figure(COLUMN_WIDTH, 2.8)
        axes = figure.axes[0]
        result = table.loc[[index for index in order if not table.loc[index, "flag"]]]
        front = pareto_front(result[column], result["top1_mean"]) if len(result) > 1 else []
        if len(front) >= 2:
            axes.step([x[index] for index in front], [table.loc[index, "top1_mean"] for index in front],
                      where="post", color="0.6", linestyle=":", zorder=0, label="Pareto front")
        on_curve = [index for index in order if table.loc[index, "label"] in list(curve)]
        on_curve.sort(key=lambda index: x[index])
        if len(on_curve) >= 2:
            axes.plot([x[index] for index in on_curve], [table.loc[index, "top1_mean"] for index in on_curve],
                      linestyle="--", color="0.5", zorder=0, label="one scale at growing cost")
        labels = []
        for index in order:
            row = table.loc[index]
            axes.errorbar(shown_x[index], row["top1_mean"], capsize=2.5, markersize=5, linestyle="none",
                          yerr=interval_error(row["top1_ci_low"], row["top1_mean"], row["top1_ci_high"]),
                          **marker_kwargs(row))
            text = f"{row['label']}{' (ref)' if row['is_ref'] else ''}{' *' if index in front else ''}"
            labels.append(axes.text(shown_x[index], row["top1_mean"], text, fontsize=6.5,
                                    color=row_style(row["label"]).color))
        axes.margins(x=0.15, y=0.12)
        adjust_text(labels, ax=axes, expand=(1.3, 1.6), arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5})
        seeds = set(table["n"])
        axes.set_xlabel(x_label)
        axes.set_ylabel("top-1 (%), " + ("mean, 95% CI over seeds" if min(seeds) >= 2 else "95% CI"))
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc="lower right", frameon=False)
        if front:
            axes.annotate("* on the Pareto front", xy=(1.0, 1.0), xycoords="axes fraction", ha="right",
                          va="bottom", fontsize=6.5)
    return figure


def t_band(curves: pd.DataFrame):
    """Per-epoch 95% t-interval of the mean over seeds."""
    mean, n = curves.mean(), curves.count()
    sem = (curves.std() / np.sqrt(n)).fillna(0.0)
    low, high = stats.t.interval(0.95, np.maximum(n - 1, 1), loc=mean, scale=sem.where(sem > 0, 1e-12))
    return mean, pd.Series(low, index=mean.index), pd.Series(high, index=mean.index)


def curves_by_row(runs: pd.DataFrame, ablation: Ablation) -> Dict[str, pd.DataFrame]:
    """Each row's validation top-1 per epoch (1-based), one column per epoch, one line per run."""
    labels = runs[ablation.factors].astype(str).agg(", ".join, axis=1)
    found = {}
    for label, group in runs.groupby(labels, sort=False):
        curves = pd.DataFrame([{epoch["epoch"] + 1: epoch["top1"] for epoch in history}
                               for history in group["history"]])
        found[label] = curves.reindex(sorted(curves.columns), axis=1)
    return found


def curves_figure(runs: pd.DataFrame, ablation: Ablation) -> Figure:
    table = ablation.table
    by_row = curves_by_row(runs, ablation)
    order = [table.loc[index, "label"] for index in figure_order(table) if table.loc[index, "label"] in by_row]
    epochs = max((int(curves.columns.max()) for curves in by_row.values() if len(curves.columns)), default=1)
    zoom = epochs >= 4
    banded = False
    with paper_style():
        figure = new_figure(FULL_WIDTH if zoom else COLUMN_WIDTH, 2.6, ncols=2 if zoom else 1)
        panels = figure.axes
        last = max(1, epochs - max(3, epochs // 3) + 1)
        for label in order:
            curves, style = by_row[label], row_style(label)
            mean, low, high = t_band(curves)
            seeds = len(curves)
            for axes in panels:
                axes.plot(mean.index, mean.to_numpy(), color=style.color, marker=style.marker, markersize=3,
                          linewidth=1.2, label=f"{label} (n={seeds})" if axes is panels[0] else None)
                if seeds >= 2:
                    axes.fill_between(mean.index, low.to_numpy(), high.to_numpy(), color=style.color, alpha=0.15,
                                      linewidth=0)
                    banded = True
        for axes in panels:
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
            axes.set_xlabel("epoch")
            axes.grid(alpha=0.3)
        panels[0].set_xlim(0.7, epochs + 0.3)
        panels[0].set_ylabel("validation top-1 (%)" + (", mean over seeds" if banded else ""))
        if zoom:
            panels[1].set_xlim(last - 0.2, epochs + 0.2)
            shown = [by_row[label].loc[:, by_row[label].columns >= last] for label in order]
            values = pd.concat([frame.stack() for frame in shown if frame.size])
            if len(values):
                pad = 0.1 * (values.max() - values.min() or 1.0)
                panels[1].set_ylim(values.min() - pad, values.max() + pad)
            panels[1].set_title(f"last {epochs - last + 1} epochs")
        handles, names = panels[0].get_legend_handles_labels()
        note = "shaded: 95% CI of the mean\nover seeds" if banded else "one run a row: no band"
        figure.legend(handles, names, loc="outside right center", frameon=False, title=note, title_fontsize=6.5)
    return figure


def write_plots(runs: pd.DataFrame, ablation: Ablation, out_dir: Path,
                curve: Sequence[str] = ()) -> Dict[str, List[Path]]:
    """Every figure, forest first (the headline), each as PNG, PDF and SVG; returns name -> paths (PNG first)."""
    return {"forest": save(forest_figure(ablation), out_dir, "forest"),
            "top1_vs_gflops": save(tradeoff_figure(ablation, "gmacs", curve), out_dir, "top1_vs_gflops"),
            "top1_vs_params": save(tradeoff_figure(ablation, "params_m", curve), out_dir, "top1_vs_params"),
            "val_curves": save(curves_figure(runs, ablation), out_dir, "val_curves")}
