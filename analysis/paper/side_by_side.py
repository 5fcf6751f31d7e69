"""One ablation of the paper beside its CPU proxy, row by row: the paper's printed table, and for each of our
rows the paper row it stands for, both differences to the reference row, the cost ratios, and whether the
proxy resolves the difference and in which direction. ``experiments/ablations.yaml`` pairs the rows."""
import math
from typing import List, Optional

import pandas as pd

from analysis.present.formatting import is_missing, mean_std, number, ratio, signed, signed_points
from analysis.stats.ablation import Ablation
from analysis.stats.verdict import BETTER, EQUIVALENT, INCONCLUSIVE, WORSE

from .ablations import AblationSpec
from .rows import PaperRow, paper_rows


def rows_of(ablation: AblationSpec) -> List[PaperRow]:
    """The paper rows the ablation uses (the reference first), each from the ablation's table when it is
    printed there, else from the first table that prints it (CrossViT-S of Sec. 4.3 is Table 7's). With
    ``whole_table``: every row of the ablation's table in the paper's order, then the others it uses."""
    everything = paper_rows()
    found = [row for row in everything if row.table == ablation.paper_table] if ablation.whole_table else []
    for name in ablation.paper_rows:
        matches = [row for row in everything if row.row == name]
        if not matches:
            raise KeyError(f"no paper row {name!r} in crossvit_paper.yaml (experiments/ablations.yaml, "
                           f"{ablation.name})")
        chosen = next((row for row in matches if row.table == ablation.paper_table), matches[0])
        if chosen not in found:
            found.append(chosen)
    return found


def reference_row(ablation: AblationSpec, rows: List[PaperRow]) -> PaperRow:
    return next(row for row in rows if row.row == ablation.paper_reference)


def paper_rows_table(ablation: AblationSpec) -> pd.DataFrame:
    """The paper's rows as printed, with each row's top-1 difference to the reference row."""
    rows = rows_of(ablation)
    reference = reference_row(ablation, rows)
    shown = pd.DataFrame({
        "paper row": [row.row for row in rows],
        "table": [row.table for row in rows],
        "params (M)": [number(row.params_m, 1) for row in rows],
        "FLOPs (G)": [number(row.gflops, 1) for row in rows],
        "top-1 (%)": [number(row.top1, 1) for row in rows],
        f"Δ vs {reference.row}": ["ref" if row is reference else signed(row.top1 - reference.top1, 1) for row in rows]})
    if any(row.top1_l is not None for row in rows):
        shown["L-branch top-1"] = [number(row.top1_l, 1) for row in rows]
        shown["S-branch top-1"] = [number(row.top1_s, 1) for row in rows]
    return shown


def resolution_verdict(paper_diff: Optional[float], row: pd.Series) -> str:
    """The row's verdict (``analysis.stats.verdict``) and, when it is better or worse, whether that goes the
    paper's way."""
    if row["is_ref"]:
        return "reference"
    if row["flag"]:
        return "flagged: not compared"
    verdict = row["verdict"]
    if verdict == EQUIVALENT:
        return f"equivalent within ±{row['margin']:g} points with {row['n']} seeds"
    if verdict == INCONCLUSIVE:
        return f"inconclusive with {row['n']} seeds (p Holm {row['p_holm']:.2f})"
    if verdict not in (BETTER, WORSE):
        return "not compared (see the note column of ablation.csv)"
    if paper_diff is None or is_missing(paper_diff):
        return f"{verdict} (no paper row to compare with)"
    if paper_diff == 0:
        return f"{verdict}, where the paper prints no difference"
    same = (paper_diff > 0) == (row["diff_vs_ref"] > 0)
    return f"{verdict}: {'the same direction as' if same else 'the opposite of'} the paper"


def side_by_side(ablation: AblationSpec, result: Ablation) -> pd.DataFrame:
    """One line per row of ours, beside the paper row it stands for (labels missing from the sweep are left
    out; rows of the sweep that ablations.yaml does not pair show no paper numbers)."""
    by_name = {row.row: row for row in rows_of(ablation)}
    paper_ref = by_name[ablation.paper_reference]
    table = result.table.set_index("label", drop=False)
    ours_ref = table[table["is_ref"]].iloc[0]
    labels = [label for label in ablation.rows if label in table.index]
    labels += [label for label in table.index if label not in ablation.rows]
    seeds = table["n"].unique()
    top1_column = f"our top-1 ({seeds[0]} seeds)" if len(seeds) == 1 else "our top-1"
    records = []
    for label in labels:
        row = table.loc[label]
        paper = by_name.get(ablation.rows.get(label) or "")
        paper_diff = None if paper is None or paper.top1 is None else paper.top1 - paper_ref.top1
        ours = row["flag"] or mean_std(row["top1_mean"], row["top1_std"])
        interval = "" if is_missing(row["diff_ci_low"]) else f" [{row['diff_ci_low']:+.1f}, {row['diff_ci_high']:+.1f}]"
        records.append({
            "ours": label, "paper row": paper.row if paper else "(not in the paper)",
            "paper top-1": number(paper.top1, 1) if paper else "-",
            "paper Δ": "ref" if paper is paper_ref else signed(paper_diff, 1),
            top1_column: ours,
            "our Δ [95% CI]": "ref" if row["is_ref"] else (
                "-" if row["flag"] or is_missing(row["diff_vs_ref"]) else
                f"{signed_points(row['diff_vs_ref'])}{interval}"),
            "FLOPs vs ref: paper / ours": f"{ratio(paper.gflops, paper_ref.gflops) if paper else '-'} / "
                                          f"{ratio(row['gmacs'], ours_ref['gmacs'])}",
            "params vs ref: paper / ours": f"{ratio(paper.params_m, paper_ref.params_m) if paper else '-'} / "
                                           f"{ratio(row['params_m'], ours_ref['params_m'])}",
            "verdict": resolution_verdict(paper_diff, row)})
    return pd.DataFrame(records)


def branch_table(ablation: AblationSpec, result: Ablation) -> Optional[pd.DataFrame]:
    """Each branch's head alone (Table 6 prints L and S) for our two-branch rows: the paper's beside ours, or
    None where the paper prints none."""
    by_name = {row.row: row for row in rows_of(ablation)}
    if not any(row.top1_l is not None for row in by_name.values()):
        return None
    table = result.table.set_index("label", drop=False)
    if "top1_branch0_mean" not in table:
        return None
    records = []
    for label, paper_name in ablation.rows.items():
        if label not in table.index or is_missing(table.loc[label].get("top1_branch1_mean")):
            continue  # a one-branch model: its head is the model's
        paper, row = by_name.get(paper_name or ""), table.loc[label]
        records.append({"ours": label, "paper row": paper.row if paper else "(not in the paper)",
                        "paper L-branch": number(paper.top1_l, 1) if paper else "-",
                        "paper S-branch": number(paper.top1_s, 1) if paper else "-",
                        "our L-branch": number(row.get("top1_branch1_mean"), 2),
                        "our S-branch": number(row.get("top1_branch0_mean"), 2),
                        "our both": "-" if math.isnan(row["top1_mean"]) else f"{row['top1_mean']:.2f}"})
        if row["flag"]:
            records[-1].update({"our L-branch": "(flagged)", "our S-branch": "(flagged)", "our both": "(flagged)"})
    return pd.DataFrame(records)
