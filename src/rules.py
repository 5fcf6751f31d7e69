"""What a config value must be, stated once beside its field in ``src.config`` (``setting(default, rule)``) and
checked by ``src.preflight`` on the composed config before any work. A rule is its test and the text that says
what the value must be and how to set it; the error reads ``KEY=VALUE: TEXT``."""
import math
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Rule:
    test: Callable[[Any], bool]
    text: str  # what the value must be and the fix, after "KEY=VALUE: "
    nullable: bool = False  # null passes (it means what the field's comment says)

    def holds(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        try:
            return bool(self.test(value))
        except TypeError:  # a value the test cannot compare: the text says what the key takes
            return False

    def or_null(self, text: str) -> "Rule":
        return Rule(self.test, text, nullable=True)


def at_least(low: float, text: str) -> Rule:
    return Rule(lambda value: value >= low and math.isfinite(value), text)


def positive(text: str) -> Rule:
    return Rule(lambda value: value > 0 and math.isfinite(value), text)


def between(low: float, high: float, text: str, closed_high: bool = False) -> Rule:
    """``low <= value < high`` (``<= high`` when closed)."""
    return Rule(lambda value: low <= value < high or (closed_high and value == high), text)


def inside(low: float, high: float, text: str) -> Rule:
    """``low < value < high``."""
    return Rule(lambda value: low < value < high, text)


def one_of(choices, text: str) -> Rule:
    return Rule(lambda value: value in choices, text)
