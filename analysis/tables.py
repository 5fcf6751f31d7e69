"""Paper-style tables (the layout of CrossViT's Table 6, arXiv v2: ``fusion | top-1 | FLOPs (G) | params (M)``) as
Markdown, LaTeX and CSV. FLOPs are counted as multiply-accumulates (GMACs), the convention the paper's
FLOPs follow (``src.models.count_flops`` gives CrossViT-S 5.62 GMACs; the paper lists 5.6 G)."""
import math
from pathlib import Path
from typing import Dict, Sequence

import pandas as pd

FACTOR_TITLES = {"fusion": "fusion", "model": "model", "data": "data", "patch_size": "patch sizes (S/L)",
                 "embed_dim": "widths (S/L)", "depth": "K x (N,M,L)", "K": "K", "img_size": "image size"}


def significant(value: float, digits: int = 3) -> str:
    """3 significant digits, at least 2 decimals: 0.0121, 5.07, 26.86."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value == 0:
        return "0"
    decimals = max(2, digits - 1 - int(math.floor(math.log10(abs(value)))))
    return f"{value:.{decimals}f}"


def mean_std(mean: float, std: float, plus_minus: str = "±") -> str:
    if isinstance(std, float) and math.isnan(std):
        return f"{mean:.2f} {plus_minus} -"
    return f"{mean:.2f} {plus_minus} {std:.2f}"


def paper_table(table: pd.DataFrame, factors: Sequence[str], plus_minus: str = "±") -> pd.DataFrame:
    """The aggregate of ``stats.aggregate`` as the printed table: one row per group, mean ± std over seeds."""
    shown = pd.DataFrame({FACTOR_TITLES.get(factor, factor): table[factor] for factor in factors})
    shown["top-1 (%)"] = [mean_std(m, s, plus_minus) for m, s in zip(table["top1_mean"], table["top1_std"])]
    shown["FLOPs (GMACs)"] = table["gmacs"].map(significant)
    shown["params (M)"] = table["params_m"].map(significant)
    shown["n"] = table["n"]
    shown["within noise of best"] = [flag if math.isnan(p) else f"{flag} (p={p:.2f})"
                                     for flag, p in zip(table["within_noise"], table["p_vs_best"])]
    shown["time/run (s)"] = table["wall_time_s"].map(lambda seconds: f"{seconds:.1f}")
    return shown


def to_markdown(shown: pd.DataFrame) -> str:
    return shown.to_markdown(index=False, disable_numparse=True)  # keep our formatting (0.580, not 0.58)


def to_latex(shown: pd.DataFrame, caption: str) -> str:
    escaped = shown.rename(columns=lambda title: title.replace("%", r"\%"))
    escaped = escaped.map(lambda cell: str(cell).replace("_", r"\_").replace("±", r"$\pm$"))
    return escaped.to_latex(index=False, caption=caption, label="tab:ablation", escape=False,
                            column_format="l" * len(shown.columns))


def write_tables(table: pd.DataFrame, factors: Sequence[str], out_dir: Path,
                 caption: str = "Ablation: top-1 mean ± std over seeds") -> Dict[str, Path]:
    """ablation.md, ablation.tex and ablation.csv (every aggregate column, for further work) in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shown = paper_table(table, factors)
    paths = {"markdown": out_dir / "ablation.md", "latex": out_dir / "ablation.tex", "csv": out_dir / "ablation.csv"}
    paths["markdown"].write_text(to_markdown(shown) + "\n")
    paths["latex"].write_text(to_latex(shown, caption.replace("±", r"$\pm$")))
    table.to_csv(paths["csv"], index=False)
    return paths
