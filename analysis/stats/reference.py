"""Which row the others are compared with. ``cross`` (the paper's method) when fusion is a varying factor
and exactly one row has it; otherwise the best mean top-1 (the first of a tie). ``--ref NAME`` picks another:
NAME is a row's label (its factor values joined by ", ", e.g. ``cross`` or ``cross, 4/8``), the same with
names (``fusion=cross, patch_size=4/8``, as the plots label rows), or a factor value only one row has.
Without ``--ref``, flagged rows (``flags``: not converged, seeds disagree) are passed over: cross when it is
not flagged, else the best unflagged row (any row when all are flagged)."""
from typing import List, Optional, Sequence

import pandas as pd

PAPER_METHOD = "cross"


class UnknownReferenceError(ValueError):
    """``--ref`` matched no row (or several): the message lists the rows."""


def row_labels(table: pd.DataFrame, factors: Sequence[str]) -> List[str]:
    return [", ".join(str(row[factor]) for factor in factors) for _, row in table.iterrows()]


def named_labels(table: pd.DataFrame, factors: Sequence[str]) -> List[str]:
    return [", ".join(f"{factor}={row[factor]}" for factor in factors) for _, row in table.iterrows()]


def matching_rows(table: pd.DataFrame, factors: Sequence[str], name: str) -> List[int]:
    for labels in (row_labels(table, factors), named_labels(table, factors)):
        exact = [index for index, label in zip(table.index, labels) if label == name]
        if exact:
            return exact
    return [index for index, row in table.iterrows() if any(str(row[factor]) == name for factor in factors)]


def choose_reference(table: pd.DataFrame, factors: Sequence[str], name: Optional[str] = None,
                     flagged: Optional[pd.Series] = None) -> int:
    """Index of the reference row in ``table`` (from summary.summarize_groups); ``flagged``: a bool per row."""
    if name is not None:
        found = matching_rows(table, factors, name)
        if len(found) != 1:
            rows = "; ".join(row_labels(table, factors))
            why = "matches no row" if not found else f"matches {len(found)} rows"
            raise UnknownReferenceError(f"--ref {name!r} {why}; the rows are: {rows}")
        return found[0]
    candidates = table if flagged is None or flagged.all() else table[~flagged]
    cross = paper_method_row(table, factors)
    return cross if cross in candidates.index else int(candidates["top1_mean"].idxmax())


def paper_method_row(table: pd.DataFrame, factors: Sequence[str]) -> Optional[int]:
    """The one row whose fusion is cross, when fusion varies; None otherwise (absent or several)."""
    if "fusion" not in factors:
        return None
    cross = table.index[table["fusion"].astype(str) == PAPER_METHOD].tolist()
    return cross[0] if len(cross) == 1 else None


def reference_reason(table: pd.DataFrame, factors: Sequence[str], name: Optional[str], index: int,
                     flagged: Optional[pd.Series] = None) -> str:
    """Why this row is the reference, for the legend."""
    if name is not None:
        return "chosen with --ref"
    cross = paper_method_row(table, factors)
    if cross == index:
        return "the paper's method"
    if flagged is None or not flagged.any() or flagged.all():
        return "the best mean top-1"
    return "the best mean top-1 of the unflagged rows" + (f"; {PAPER_METHOD} is flagged" if cross is not None else "")
