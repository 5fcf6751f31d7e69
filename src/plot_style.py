"""One look for every figure: a colour and a marker per row fixed by the row's name (a fusion, a scales row, any
other label), so that ``cross`` is the same blue in a two-row sweep, the shipped ablation, the notebooks, the report
and the README; the row order of every figure (the reference first, then by effect); the figure sizes of a paper's
column; and the formats each figure is saved in.

Fusions and scales rows have their own entries (a dual scales row takes its fusion's colour with another marker);
any other label (``8/16``, ``True``, ``fusion=cross, patch_size=4/16``) gets a colour and a marker from a hash of
its text, the same in every collation whatever rows are beside it. It lives in ``src`` because both the analysis
(``analysis/present/plots.py``) and the benchmarks (``src/bench/fusion_cost.py``) draw fusions, and ``src`` never
imports ``analysis``."""
import hashlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

# Okabe & Ito's colour-blind-safe palette (Nature Methods 8:441, 2011), then two of Tol's muted colours.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000", "#882255",
           "#44AA99"]
MARKERS = ["o", "s", "D", "^", "v", "P", "X", "p", "h", "<", ">"]


@dataclass(frozen=True)
class RowStyle:
    color: str
    marker: str


FUSIONS: Dict[str, RowStyle] = {
    "cross": RowStyle("#0072B2", "o"),  # the paper's method
    "none": RowStyle("#000000", "s"),
    "all_attn": RowStyle("#D55E00", "D"),
    "all_attn_residual": RowStyle("#E69F00", "D"),
    "cls_token": RowStyle("#009E73", "^"),
    "pairwise": RowStyle("#CC79A7", "v"),
    "gated_cross": RowStyle("#56B4E9", "P"),
}
SCALES: Dict[str, RowStyle] = {
    "micro_dual_cross": RowStyle(FUSIONS["cross"].color, "o"),
    "micro_dual_none": RowStyle(FUSIONS["none"].color, "s"),
    "micro_l_branch": RowStyle("#882255", "<"),
    "micro_l_branch_matched": RowStyle("#882255", ">"),
    "micro_s_branch": RowStyle("#44AA99", "h"),
}
NAMED = {**FUSIONS, **SCALES}
OTHER_COLORS = [color for color in PALETTE if color not in {style.color for style in NAMED.values()}] or PALETTE

# A paper's column is about 3.4 in wide (two-column layouts), a full-width figure about 7 in.
COLUMN_WIDTH, FULL_WIDTH = 3.4, 7.0
FORMATS = ("png", "pdf", "svg")
DPI = 200
RC = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
      "legend.fontsize": 7, "axes.spines.top": False, "axes.spines.right": False, "svg.fonttype": "none",
      "pdf.fonttype": 42}  # text stays text in SVG and PDF (editable, searchable)


def row_style(label: str) -> RowStyle:
    """The colour and marker of a row, by its label (or the fusion / scales option it is named by)."""
    label = str(label)
    name = label if "," in label else label.split("=", 1)[-1]  # "fusion=cross" as "cross"; "cross, 4/16" as is
    if name in NAMED:
        return NAMED[name]
    digest = int(hashlib.sha256(str(label).encode()).hexdigest(), 16)
    return RowStyle(OTHER_COLORS[digest % len(OTHER_COLORS)], MARKERS[(digest // len(OTHER_COLORS)) % len(MARKERS)])


def figure_order(table: pd.DataFrame) -> List[int]:
    """Row indices in the order every figure lists them: the reference, then by Δ vs the reference (highest first),
    then rows without a Δ (flagged, not compared) by label."""
    reference = [index for index in table.index if table.loc[index, "is_ref"]]
    compared = table[~table["is_ref"] & table["diff_vs_ref"].notna()].sort_values(["diff_vs_ref", "label"],
                                                                                  ascending=[False, True])
    rest = table[~table["is_ref"] & table["diff_vs_ref"].isna()].sort_values("label")
    return reference + list(compared.index) + list(rest.index)


@contextmanager
def paper_style():
    with matplotlib.rc_context(RC):
        yield


def new_figure(width: float = COLUMN_WIDTH, height: float = 2.6, **subplots) -> Figure:
    """A figure outside pyplot (nothing to close, no backend switched), in the paper style."""
    with paper_style():
        figure = Figure(figsize=(width, height), layout="constrained")
        figure.subplots(**subplots)
    return figure


def save(figure: Figure, out_dir: Path, stem: str) -> List[Path]:
    """PNG (for the report and notebooks), PDF and SVG (for a paper) of the same figure."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.{extension}" for extension in FORMATS]
    with paper_style():
        for path in paths:
            figure.savefig(path, dpi=DPI, bbox_inches="tight", metadata={"Date": None} if path.suffix == ".svg"
                           else {"CreationDate": None} if path.suffix == ".pdf" else None)
    return paths
