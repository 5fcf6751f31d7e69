"""The types of the ``results.json`` fields, derived from the one definition of the record
(``src.train.record.RunRecord``, its ``config`` from ``src.config``) and checked before a record becomes a row: a
hand-edited, half-migrated or foreign file would otherwise crash the loader (a string where a dict is read) or the
report. ``field_problem`` names the first field of the wrong type.

Null is allowed where older results have nothing (``REQUIRED`` says otherwise). A ``Measured`` field (accuracies,
losses) may also be a string or a non-finite number: such a value is not a wrong type but a missing measurement,
counted and named by ``metrics`` instead of skipping the run.
"""
import dataclasses
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Literal, Optional

from src.config import Config
from src.train.record import MEASURED, EpochRow, RunRecord


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def kind(value: Any) -> str:
    """What a JSON value is, in the words of the warning: "a string", "a list", "null"."""
    if value is None:
        return "null"
    names = {bool: "a bool", int: "an int", float: "a number", str: "a string", list: "a list", dict: "a dict"}
    return names.get(type(value), f"a {type(value).__name__}")


@dataclass(frozen=True)
class Rule:
    """What a field accepts; a dict's own ``fields`` and a list's items (``each``) are checked once it is one."""
    accepts: Callable[[Any], bool]
    expected: str
    required: bool = False  # null or missing is a problem too
    fields: Dict[str, "Rule"] = field(default_factory=dict)
    each: Optional["Rule"] = None


def dict_of(expected: str, required: bool = False, **fields: Rule) -> Rule:
    return Rule(lambda value: isinstance(value, dict), expected, required, fields)


TEXT = Rule(lambda value: isinstance(value, str), "a string")
INT = Rule(is_int, "an int")
NUMBER = Rule(is_number, "a number")
FLAG = Rule(lambda value: isinstance(value, bool), "true or false")
# strings pass here: metrics.py counts them as not measured (json.dumps(default=str) writes a float32 as one)
METRIC = Rule(lambda value: is_number(value) or isinstance(value, str), "a number")
ANYTHING = Rule(lambda value: True, "anything")
# what the analysis cannot do without; every other field may be null or missing (older results have less)
REQUIRED = {"status", "config", "seed", "history[].epoch"}


def words(name: str) -> str:
    """``EpochRow`` -> "epoch row"."""
    return re.sub(r"(?<!^)(?=[A-Z])", " ", name).lower()


def article(noun: str) -> str:
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def plural(kind) -> str:
    """What a list of ``kind`` holds, in the warning's words: "ints", "epoch rows", "lists of ints"."""
    if is_typeddict(kind):
        return words(kind.__name__) + "s"
    if typing.get_origin(kind) is list:
        return "lists of " + plural(typing.get_args(kind)[0])
    names = {int: "ints", float: "numbers", str: "strings", bool: "flags"}
    return names.get(strip(kind), "values")


def strip(kind):
    """``Optional[X]`` and ``Annotated[X, ...]`` -> X."""
    if typing.get_origin(kind) is typing.Annotated:
        return strip(typing.get_args(kind)[0])
    if typing.get_origin(kind) is typing.Union:
        return strip(next(arg for arg in typing.get_args(kind) if arg is not type(None)))
    return kind


def measured(kind) -> bool:
    """A ``Measured`` field: a value that is not a number is a missing measurement (``metrics``), not a wrong type."""
    return typing.get_origin(kind) is typing.Annotated and MEASURED in typing.get_args(kind)[1:]


def is_typeddict(kind) -> bool:
    return isinstance(kind, type) and issubclass(kind, dict) and hasattr(kind, "__total__")


def rule_for(kind, path: str = "", required: bool = False) -> Rule:
    """The rule of the field at ``path`` (``history[].epoch``) of type ``kind``: from ``RunRecord``'s annotations,
    or ``src.config``'s dataclasses."""
    required = required or path in REQUIRED
    if measured(kind):
        return Rule(METRIC.accepts, METRIC.expected, required)
    kind = strip(kind)
    if is_typeddict(kind) or dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind, include_extras=True)
        expected = article(words(kind.__name__)) if kind in ROWS else "a dict"
        return dict_of(expected, required, **{key: rule_for(hint, f"{path}.{key}".lstrip("."))
                                              for key, hint in hints.items()})
    origin = typing.get_origin(kind)
    if origin is list:
        (item,) = typing.get_args(kind) or (Any,)
        return Rule(lambda value: isinstance(value, list), f"a list of {plural(item)}", required,
                    each=rule_for(item, f"{path}[]", required=not measured(item)))
    if origin is dict or kind is dict:
        return dict_of("a dict", required)
    simple = {str: TEXT, int: INT, float: NUMBER, bool: FLAG}.get(kind) or (TEXT if origin is Literal else ANYTHING)
    return Rule(simple.accepts, simple.expected, required)


ROWS = (EpochRow,)  # named by what they are ("an epoch row"); the other dicts are "a dict"
# the record as src writes it, its ``config`` as src.config declares it
_WRITTEN = rule_for(RunRecord)
RECORD = dataclasses.replace(_WRITTEN, fields={**_WRITTEN.fields, "config": rule_for(Config, "config")})
CHOICE = Rule(TEXT.accepts, "a Hydra option name (a string)")


def problem(value: Any, rule: Rule, name: str) -> Optional[str]:
    """"history[2].epoch is a string, expected an int", or None when ``value`` fits ``rule``."""
    if not rule.accepts(value):
        return f"{name} is {kind(value)}, expected {rule.expected}"
    children = [(key in value, value.get(key), sub_rule, f"{name}.{key}" if name else key)
                for key, sub_rule in rule.fields.items()]
    children += [(True, item, rule.each, f"{name}[{index}]") for index, item in enumerate(value if rule.each else [])]
    for present, child, child_rule, child_name in children:
        if child is None:
            found = (f"{child_name} is {'null' if present else 'missing'}, expected {child_rule.expected}"
                     if child_rule.required else None)
        else:
            found = problem(child, child_rule, child_name)
        if found:
            return found
    return None


def field_problem(record: Dict[str, Any]) -> Optional[str]:
    """The first field of ``record`` (a parsed results.json) whose type the analysis cannot read, or None."""
    found = problem(record, RECORD, "")
    if found:
        return found
    for key, value in (record.get("choices") or {}).items():  # each choice becomes a column to group on
        if value is not None and not CHOICE.accepts(value):
            return f"choices.{key} is {kind(value)}, expected {CHOICE.expected}"
    return None
