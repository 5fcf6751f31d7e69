"""Paper-style tables (the layout of CrossViT's Table 6, arXiv v2: ``fusion | top-1 | FLOPs (G) | params (M)``)
as Markdown, LaTeX and CSV. Top-1 is mean ± std over seeds (the paper's convention), then its 95% interval,
the difference to the reference row with its 95% interval and the Holm-adjusted p-value (``*`` below 0.05);
the legend line under the table names the tests. FLOPs are counted as multiply-accumulates (GMACs), the
convention the paper's FLOPs follow (``src.models.count_flops`` gives CrossViT-S 5.62 GMACs; the paper
lists 5.6 G).

A flagged row (``flags``: not converged, seeds disagree) keeps its labels, n and costs; its top-1 cell shows
the flag and its other result cells (interval, Δ, p, branch top-1) "-", in Markdown and LaTeX alike. ablation.csv
keeps every number the row's runs measured, for diagnosis, with the reason in its ``flag`` column (empty for
a result) and its comparison columns empty: filter on ``flag`` before using the numbers."""
import math
from pathlib import Path
from typing import Dict, List

import pandas as pd

from .ablation import NOT_COMPARED, REFERENCE_TEST, Ablation, significance_mark
from .stats import BRANCH_COLUMN

FACTOR_TITLES = {"fusion": "fusion", "model": "model", "data": "data", "patch_size": "patch sizes (S/L)",
                 "embed_dim": "widths (S/L)", "depth": "K x (N,M,L)", "K": "K", "img_size": "image size",
                 "class_token": "CLS token", "arch": "paper row (conf/arch)"}
LATEX = {"\\": r"\textbackslash{}", "%": r"\%", "_": r"\_", "&": r"\&", "#": r"\#", "±": r"$\pm$",
         "Δ": r"$\Delta$", "<": r"$<$", ">": r"$>$", "≥": r"$\geq$"}


def is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def significant(value: float, digits: int = 3) -> str:
    """3 significant digits, at least 2 decimals: 0.0121, 5.07, 26.86."""
    if is_missing(value):
        return "-"
    if value == 0:
        return "0"
    decimals = max(2, digits - 1 - int(math.floor(math.log10(abs(value)))))
    return f"{value:.{decimals}f}"


def mean_std(mean: float, std: float, plus_minus: str = "±") -> str:
    if is_missing(std):
        return f"{mean:.2f} {plus_minus} -"
    return f"{mean:.2f} {plus_minus} {std:.2f}"


def bracket(low: float, high: float) -> str:
    return "-" if is_missing(low) or is_missing(high) else f"[{low:.1f}, {high:.1f}]"


def difference(row: pd.Series) -> str:
    if row["is_ref"]:
        return "ref"
    if is_missing(row["diff_vs_ref"]):
        return "-"
    interval = bracket(row["diff_ci_low"], row["diff_ci_high"])
    diff = 0.0 if abs(row["diff_vs_ref"]) < 0.005 else row["diff_vs_ref"]  # float rounding prints as +0.00, not -0.00
    return f"{diff:+.2f}" + ("" if interval == "-" else f" {interval}")


def p_value(p: float) -> str:
    if is_missing(p):
        return "-"
    shown = f"{p:.3f}" if p >= 0.001 else f"{p:.0e}"
    return f"{shown} {significance_mark(p)}".rstrip()


def branch_title(column: str, branches: int) -> str:
    index = int(BRANCH_COLUMN.match(column.removesuffix("_mean")).group(1))
    return f"{'SL'[index]}-branch top-1" if branches == 2 else f"branch {index} top-1"


def branch_mean_columns(table: pd.DataFrame) -> List[str]:
    columns = [c for c in table.columns if c.endswith("_mean") and BRANCH_COLUMN.match(c.removesuffix("_mean"))]
    return [c for c in columns if table[c].notna().any()]


def paper_table(ablation: Ablation, plus_minus: str = "±") -> pd.DataFrame:
    """The printed table: one row per group."""
    table, factors = ablation.table, ablation.factors
    shown = pd.DataFrame({FACTOR_TITLES.get(factor, factor): table[factor] for factor in factors})
    shown["top-1 (%)"] = [mean_std(m, s, plus_minus) for m, s in zip(table["top1_mean"], table["top1_std"])]
    shown["95% CI"] = [bracket(low, high) for low, high in zip(table["top1_ci_low"], table["top1_ci_high"])]
    delta = f"Δ vs {ablation.reference} [95% CI]"
    shown[delta] = [difference(row) for _, row in table.iterrows()]
    shown["p (Holm)"] = table["p_holm"].map(p_value)
    if table.loc[~table["test"].isin([REFERENCE_TEST, NOT_COMPARED]), "test"].nunique() > 1:
        shown["test"] = table["test"]
    shown["n"] = table["n"]
    branches = branch_mean_columns(table)
    for column in branches:
        shown[branch_title(column, len(branches))] = table[column].map(lambda value: f"{value:.2f}")
    hide_flagged_results(shown, table, ["95% CI", delta, "p (Holm)",
                                        *[branch_title(column, len(branches)) for column in branches]])
    shown["FLOPs (GMACs)"] = table["gmacs"].map(significant)
    shown["params (M)"] = table["params_m"].map(significant)
    shown["time/run (s)"] = table["wall_time_s"].map(lambda seconds: f"{seconds:.1f}")
    return shown


def hide_flagged_results(shown: pd.DataFrame, table: pd.DataFrame, result_columns: List[str]) -> None:
    """A flagged row's top-1 cell shows why, its other result cells "-" (a flagged reference keeps "ref")."""
    flagged = table["flag"] != ""
    if not flagged.any():
        return
    for column in result_columns:
        shown.loc[flagged & (shown[column] != "ref"), column] = "-"
    shown.loc[flagged, "top-1 (%)"] = table.loc[flagged, "flag"]


def to_markdown(shown: pd.DataFrame) -> str:
    return shown.to_markdown(index=False, disable_numparse=True)  # keep our formatting (0.580, not 0.58)


def latex_text(text: str) -> str:
    return "".join(LATEX.get(character, character) for character in str(text))


def to_latex(shown: pd.DataFrame, caption: str) -> str:
    escaped = shown.rename(columns=latex_text).map(latex_text)
    return escaped.to_latex(index=False, caption=caption, label="tab:ablation", escape=False,
                            column_format="l" * len(shown.columns))


def markdown_report(ablation: Ablation) -> str:
    """The table and the two lines under it (legend, seeds needed), as printed and saved."""
    return "\n\n".join([to_markdown(paper_table(ablation)), *ablation.notes])  # blank lines: separate paragraphs


def write_tables(ablation: Ablation, out_dir: Path,
                 caption: str = "Ablation: top-1 mean ± std over seeds") -> Dict[str, Path]:
    """ablation.md, ablation.tex (legend in the caption) and ablation.csv (every column) in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / "ablation.md", "latex": out_dir / "ablation.tex", "csv": out_dir / "ablation.csv"}
    paths["markdown"].write_text(markdown_report(ablation) + "\n")
    latex = to_latex(paper_table(ablation), latex_text(f"{caption}. {ablation.legend}"))
    paths["latex"].write_text(latex + "".join(f"% {line}\n" for line in ablation.notes[1:]))
    ablation.table.to_csv(paths["csv"], index=False)
    return paths
