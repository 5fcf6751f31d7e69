"""Paper-style tables (the layout of CrossViT's Table 6, arXiv v2: ``fusion | top-1 | FLOPs (G) | params (M)``)
as Markdown, LaTeX and CSV. Top-1 is mean ± std over seeds (the paper's convention), then its 95% interval,
the difference to the reference row with its 95% interval, the Holm-adjusted p-value and the verdict (better,
worse, equivalent within the declared margin, inconclusive: ``stats.verdict``); the lines under the table name
the tests and say how the verdicts were reached. FLOPs are counted as multiply-accumulates (GMACs), the
convention the paper's FLOPs follow (``src.models.count_flops`` gives CrossViT-S 5.62 GMACs; the paper
lists 5.6 G).

A flagged row (``stats.flags``: not converged, seeds disagree) keeps its labels, n and costs; its top-1 cell shows
the flag and its other result cells (interval, Δ, p, branch top-1) "-", in Markdown and LaTeX alike. ablation.csv
keeps every number the row's runs measured, for diagnosis, with the reason in its ``flag`` column (empty for
a result) and its comparison columns empty: filter on ``flag`` before using the numbers."""
from pathlib import Path
from typing import Any, Dict, List

import pandas as pd

from analysis.stats.ablation import NOT_COMPARED, REFERENCE_TEST, Ablation
from analysis.stats.summary import BRANCH_COLUMN
from analysis.stats.verdict import EQUIVALENT, INCONCLUSIVE, RESOLVED
from src.plot_style import figure_order

from .formatting import bracket, is_missing, mean_std, signed_points, significant

FACTOR_TITLES = {"fusion": "fusion", "model": "model", "data": "data", "patch_size": "patch sizes (S/L)",
                 "embed_dim": "widths (S/L)", "depth": "K x (N,M,L)", "K": "K", "img_size": "image size",
                 "class_token": "CLS token", "arch": "paper row (conf/arch)",
                 "scales": "scales (conf/scales)"}
# pandas escapes LaTeX's special characters (& % $ # _ { } ~ ^ \); these print wrong in LaTeX's text mode
# (< and > as other glyphs, the rest not at all), so they are set in math mode after pandas has escaped.
LATEX_MATH = {"±": r"$\pm$", "Δ": r"$\Delta$", "<": r"$<$", ">": r"$>$", "≥": r"$\geq$"}


def difference(row: pd.Series) -> str:
    if row["is_ref"]:
        return "ref"
    if is_missing(row["diff_vs_ref"]):
        return "-"
    interval = bracket(row["diff_ci_low"], row["diff_ci_high"])
    return signed_points(row["diff_vs_ref"]) + ("" if interval == "-" else f" {interval}")


def p_value(p: float) -> str:
    if is_missing(p):
        return "-"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.0e}"


def verdict_cell(row: pd.Series) -> str:
    """"better", "equivalent (±0.5)", "better (at 13 seeds)" where a later look resolved it; "ref" / "-"."""
    verdict = row.get("verdict", "")
    if row["is_ref"]:
        return "ref"
    if verdict not in RESOLVED and verdict != INCONCLUSIVE:
        return "-"
    shown = f"{verdict} (±{row['margin']:g})" if verdict == EQUIVALENT else verdict
    resolved_at, seeds = row.get("resolved_at"), row.get("n")
    if not is_missing(resolved_at) and not is_missing(seeds) and resolved_at < seeds:
        shown += f" (at {resolved_at:g} seeds)"
    return shown


def branch_title(column: str, branches: int) -> str:
    index = int(BRANCH_COLUMN.match(column.removesuffix("_mean")).group(1))
    return f"{'SL'[index]}-branch top-1" if branches == 2 else f"branch {index} top-1"


def branch_mean_columns(table: pd.DataFrame) -> List[str]:
    columns = [c for c in table.columns if c.endswith("_mean") and BRANCH_COLUMN.match(c.removesuffix("_mean"))]
    return [c for c in columns if table[c].notna().any()]


def ablation_table(ablation: Ablation, plus_minus: str = "±") -> pd.DataFrame:
    """The printed table: one row per group (the layout of the paper's Table 6), in the figures' order (the
    reference, then by Δ); ablation.csv keeps the groups' sorted order."""
    table, factors = ablation.table.loc[figure_order(ablation.table)], ablation.factors
    shown = pd.DataFrame({FACTOR_TITLES.get(factor, factor): table[factor] for factor in factors})
    shown["top-1 (%)"] = [mean_std(m, s, plus_minus) for m, s in zip(table["top1_mean"], table["top1_std"])]
    shown["95% CI"] = [bracket(low, high) for low, high in zip(table["top1_ci_low"], table["top1_ci_high"])]
    delta = f"Δ vs {ablation.reference} [95% CI]"
    shown[delta] = [difference(row) for _, row in table.iterrows()]
    shown["p (Holm)"] = table["p_holm"].map(p_value)
    shown["verdict"] = [verdict_cell(row) for _, row in table.iterrows()]
    if table.loc[~table["test"].isin([REFERENCE_TEST, NOT_COMPARED]), "test"].nunique() > 1:
        shown["test"] = table["test"]
    shown["n"] = table["n"]
    branches = branch_mean_columns(table)
    for column in branches:
        shown[branch_title(column, len(branches))] = table[column].map(  # "-": a one-branch row
            lambda value: "-" if is_missing(value) else f"{value:.2f}")
    hide_flagged_results(shown, table, ["95% CI", delta, "p (Holm)", "verdict",
                                        *[branch_title(column, len(branches)) for column in branches]])
    shown["FLOPs (GMACs)"] = table["gmacs"].map(significant)
    shown["params (M)"] = table["params_m"].map(significant)
    if ablation.one_machine:  # wall times from several machines compare the machines, not the rows
        shown[WALL_TIME] = table["wall_time_s"].map(lambda seconds: f"{seconds:.1f}")
    return shown


WALL_TIME = "wall time/run (s)"
WALL_TIME_NOTE = (f"{WALL_TIME}: the mean time from a run's start to its record on the machine it ran on (start-up, "
                  "training, evaluation; a resumed run counts its last part, jobs sharing cores run slower); left "
                  "out where the runs pool devices or thread counts. Speed is measured by python -m src.bench.")


def table_notes(ablation: Ablation) -> List[str]:
    """The lines under the printed table: the ablation's notes, and what the time column timed where it is shown."""
    return [*ablation.notes, *([WALL_TIME_NOTE] if ablation.one_machine else [])]


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


def latex_math(text: Any) -> str:
    """``text`` (already escaped by pandas) with LATEX_MATH's symbols in math mode."""
    return "".join(LATEX_MATH.get(character, character) for character in str(text))


def latex_text(text: str) -> str:
    """``text`` escaped as pandas escapes a table's cells, then LATEX_MATH: for the caption, which pandas leaves
    as given."""
    one_cell = pd.DataFrame([[text]]).style.hide(axis="index").hide(axis="columns").format(escape="latex")
    return latex_math(one_cell.to_string().removesuffix("\n"))


def to_latex(shown: pd.DataFrame, caption: str) -> str:
    """The table as LaTeX (booktabs rules); cells and headers escaped by pandas, then ``latex_math``."""
    symbols = {column: latex_math for column in shown.columns}
    return shown.to_latex(index=False, caption=latex_text(caption), label="tab:ablation", escape=True,
                          formatters={**symbols, "__columns__": latex_math}, column_format="l" * len(shown.columns))


def markdown_report(ablation: Ablation) -> str:
    """The table and the lines under it (legend, seeds needed, detectable difference, flags), as printed and
    saved."""
    return "\n\n".join([to_markdown(ablation_table(ablation)), *table_notes(ablation)])  # blank lines: paragraphs


def write_tables(ablation: Ablation, out_dir: Path,
                 caption: str = "Ablation: top-1 mean ± std over seeds") -> Dict[str, Path]:
    """ablation.md, ablation.tex (legend in the caption) and ablation.csv (every column) in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / "ablation.md", "latex": out_dir / "ablation.tex", "csv": out_dir / "ablation.csv"}
    paths["markdown"].write_text(markdown_report(ablation) + "\n")
    latex = to_latex(ablation_table(ablation), f"{caption}. {ablation.legend}")
    paths["latex"].write_text(latex + "".join(f"% {line}\n" for line in table_notes(ablation)[1:]))
    ablation.table.to_csv(paths["csv"], index=False)
    return paths
