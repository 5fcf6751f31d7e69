"""How numbers print in every table: "-" for a missing value, 3 significant digits for costs, mean ± std,
intervals, signed differences (float rounding prints +0.00, never -0.00), percentages and ratios."""
import math
from typing import Optional

MISSING = "-"


def is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def significant(value: float, digits: int = 3) -> str:
    """3 significant digits, at least 2 decimals: 0.0121, 5.07, 26.86."""
    if is_missing(value):
        return MISSING
    if value == 0:
        return "0"
    decimals = max(2, digits - 1 - int(math.floor(math.log10(abs(value)))))
    return f"{value:.{decimals}f}"


def number(value: Optional[float], digits: int) -> str:
    return MISSING if is_missing(value) else f"{value:.{digits}f}"


def signed(value: Optional[float], digits: int) -> str:
    return MISSING if is_missing(value) else f"{value:+.{digits}f}"


def signed_points(diff: float) -> str:
    """A top-1 difference in points, 2 decimals; under 0.005 (float rounding of equal means) prints +0.00."""
    return f"{0.0 if abs(diff) < 0.005 else diff:+.2f}"


def percent(value: Optional[float]) -> str:
    """A relative difference: 0.012 -> +1.2%."""
    return MISSING if is_missing(value) else f"{value * 100:+.1f}%"


def ratio(value: Optional[float], reference: Optional[float]) -> str:
    if is_missing(value) or is_missing(reference) or reference == 0:
        return MISSING
    return f"{value / reference:.2f}x"


def mean_std(mean: float, std: float, plus_minus: str = "±") -> str:
    if is_missing(std):
        return f"{mean:.2f} {plus_minus} -"
    return f"{mean:.2f} {plus_minus} {std:.2f}"


def bracket(low: float, high: float) -> str:
    return MISSING if is_missing(low) or is_missing(high) else f"[{low:.1f}, {high:.1f}]"
