"""A search space key's distribution (``Dist``) as a space file writes it: ``{float: [low, high], log: bool,
step: x, grid: [...]}``, the same with ``int``, or ``{categorical: [a, b, ...]}``; read and checked alone (its
config key's own rules are ``src.tune.check``'s)."""
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

from .errors import BadSpace, check_type, did_you_mean

# A distribution's kind -> the keys it takes besides its own [low, high] or choices.
DIST_KEYS = {"float": ("log", "step", "grid"), "int": ("log", "step", "grid"), "categorical": ()}


@dataclass(frozen=True)
class Dist:
    """One key's distribution: ``{float: [low, high], log: bool, step: x, grid: [...]}``, the same with ``int``,
    or ``{categorical: [choice, ...]}``. ``grid`` is what an exhaustive grid search over the key would run, for the
    cost comparison only (a categorical's grid is its choices, an int's defaults to every value of its range)."""
    key: str
    kind: str
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = None
    choices: Tuple[Any, ...] = ()
    grid: Optional[Tuple[Any, ...]] = None

    def suggest(self, trial) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return any(value == choice and type(value) is type(choice) for choice in self.choices) or (
                isinstance(value, (int, float)) and not isinstance(value, bool) and value in self.choices)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind == "int" and not float(value).is_integer():
            return False
        return self.low <= value <= self.high

    def values(self) -> List[Any]:
        """Every value worth checking against the config: the ends of the range, the choices, the grid."""
        return list(dict.fromkeys([*((self.low, self.high) if self.kind != "categorical" else self.choices),
                                   *(self.grid or ())]))

    def grid_values(self) -> Optional[Tuple[Any, ...]]:
        if self.kind == "categorical":
            return self.choices
        if self.grid is None and self.kind == "int":
            return tuple(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        return self.grid


def check_dist(key: str, spec: Any, where: str) -> Dist:
    here = f"{where}space.{key}"
    if not isinstance(spec, dict):
        raise BadSpace(f"{here}: {spec!r}: give one of {{float: [low, high]}}, {{int: [low, high]}}, "
                       f"{{categorical: [a, b]}}")
    kinds = [kind for kind in DIST_KEYS if kind in spec]
    if len(kinds) != 1:
        raise BadSpace(f"{here}: give exactly one of float, int, categorical (has {', '.join(kinds) or 'none'})")
    kind = kinds[0]
    for name in spec:
        if name != kind and name not in DIST_KEYS[kind]:
            allowed = ", ".join((kind, *DIST_KEYS[kind]))
            raise BadSpace(f"{here}: unknown key {name!r}{did_you_mean(name, DIST_KEYS[kind])}: {kind} takes {allowed}")
    if kind == "categorical":
        return Dist(key, kind, choices=check_choices(spec[kind], here))
    low, high = check_range(spec[kind], kind, here)
    log = check_type(spec.get("log", False), bool, "log", f"{here}.")
    step = spec.get("step")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0 or (
                kind == "int" and not isinstance(step, int)):
            raise BadSpace(f"{here}.step: {step!r}: must be a {'whole ' if kind == 'int' else ''}number > 0")
        if log:
            raise BadSpace(f"{here}: step and log: true do not go together (Optuna samples either on a log scale "
                           f"or on steps): drop one")
    if log and low <= 0:
        raise BadSpace(f"{here}: log: true needs low > 0, got {kind}: [{low}, {high}]: a log scale starts above "
                       f"zero; raise low (e.g. 1.0e-6) or drop log")
    dist = Dist(key, kind, low=low, high=high, log=log, step=step)
    if "grid" in spec:
        dist = dataclasses.replace(dist, grid=check_grid(spec["grid"], dist, here))
    return dist


def check_range(value: Any, kind: str, here: str) -> Tuple[float, float]:
    number = int if kind == "int" else (int, float)
    if (not isinstance(value, list) or len(value) != 2 or
            not all(isinstance(end, number) and not isinstance(end, bool) for end in value)):
        example = "[0, 4]" if kind == "int" else "[1.0e-4, 3.0e-3]"
        raise BadSpace(f"{here}: {kind}: {value!r}: give [low, high] as {'integers' if kind == 'int' else 'numbers'}"
                       f", e.g. {kind}: {example}")
    low, high = value
    if not all(math.isfinite(end) for end in value):
        raise BadSpace(f"{here}: {kind}: {value!r}: the ends must be finite numbers")
    if low >= high:
        raise BadSpace(f"{here}: {kind}: [{low}, {high}] is {'empty' if low == high else 'inverted'}: low must be "
                       f"below high, e.g. {kind}: [{min(low, high)}, {max(low, high) if low != high else 'HIGH'}]"
                       f"{' (to fix the key, put it in base instead)' if low == high else ''}")
    return low, high


def check_choices(value: Any, here: str) -> Tuple[Any, ...]:
    if not isinstance(value, list) or len(value) < 2:
        what = "has no choices" if not value else "is one value, not a choice (to fix the key, put it in base)"
        raise BadSpace(f"{here}: categorical: {value!r} {what}: list two or more values, e.g. "
                       f"categorical: [null, 1.0]")
    for choice in value:
        if choice is not None and not isinstance(choice, (bool, int, float, str)):
            raise BadSpace(f"{here}: choice {choice!r}: Optuna's choices are null, booleans, numbers or text")
    if len(set(map(repr, value))) < len(value):
        raise BadSpace(f"{here}: categorical: {value!r} repeats a choice: list each once")
    return tuple(value)


def check_grid(value: Any, dist: Dist, here: str) -> Tuple[Any, ...]:
    if not isinstance(value, list) or not value:
        raise BadSpace(f"{here}.grid: {value!r}: give the values a grid search would run, e.g. grid: "
                       f"[{dist.low}, {dist.high}]")
    for item in value:
        if not dist.contains(item):
            raise BadSpace(f"{here}.grid: {item!r} is outside {dist.kind}: [{dist.low}, {dist.high}]"
                           f"{' or not an integer' if dist.kind == 'int' else ''}: the grid lies inside the range")
    if len(set(value)) < len(value):
        raise BadSpace(f"{here}.grid: {value!r} repeats a value: list each once")
    return tuple(value)
