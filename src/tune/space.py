"""The space file (``conf/tune/NAME.yaml``, or any path): its schema, each key's rule stated once in ``SpaceFile``,
read with OmegaConf and checked whole before anything else happens. The config tree is not read here
(``src.tune.check`` holds the space against it)."""
import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from omegaconf import OmegaConf

from .dists import Dist, check_dist
from .errors import BadSpace, check_type, did_you_mean

CONF_TUNE = Path(__file__).resolve().parents[2] / "conf" / "tune"
# python -m src.tune SUBCOMMAND SPACE: no space may take these names
SUBCOMMANDS = ("best", "report", "recheck", "wandb")


@dataclass
class SpaceFile:
    """The keys of a space file, with their defaults; the comments are the schema's documentation."""
    arms: Dict[str, List[Any]]  # config key or group -> values; one study per combination of values
    space: Dict[str, Dict[str, Any]]  # config key -> distribution (``Dist``)
    trials: int  # per arm: complete + pruned trials, over all workers
    base: List[str] = field(default_factory=list)  # overrides every trial gets, before the arm's and the sampled
    metric: str = "selection_top1"  # maximised; read from each epoch row of a run's results.json history
    pruner: Dict[str, Any] = field(default_factory=lambda: {"type": "successive_halving"})
    sampler: Dict[str, Any] = field(default_factory=lambda: {"type": "tpe"})
    enqueue: List[Dict[str, Any]] = field(default_factory=list)  # param sets tried first, once per study
    storage: Optional[str] = None  # null: sqlite:///OUT/optuna.db
    out: Optional[str] = None  # null: tuning/NAME; run dirs are OUT/ARM/ID


# Optuna's pruners: the keys each takes -> (minimum, default; Hyperband's max_resource defaults to a run's epochs).
PRUNERS = {
    "successive_halving": {"min_resource": (1, 1), "reduction_factor": (2, 3), "min_early_stopping_rate": (0, 0),
                           "bootstrap_count": (0, 0)},
    "hyperband": {"min_resource": (1, 1), "max_resource": (1, None), "reduction_factor": (2, 3)},
    "median": {"n_startup_trials": (0, 5), "n_warmup_steps": (0, 0), "interval_steps": (1, 1)},
    "none": {},
}
SAMPLERS = {"tpe": ("seed", "n_startup_trials"), "random": ("seed",)}


@dataclass(frozen=True)
class Space:
    """A checked space file."""
    name: str
    path: Path
    arms: List[Tuple[Tuple[str, Any], ...]]  # each arm: its (key, value) pairs
    dists: Dict[str, Dist]
    trials: int
    base: List[str]
    metric: str
    pruner: Dict[str, Any]
    sampler: Dict[str, Any]
    enqueue: List[Dict[str, Any]]
    storage: str
    out: Path

    def grid_points(self) -> Optional[int]:
        """Points of the exhaustive grid; None where a float key gives no ``grid``."""
        sizes = [dist.grid_values() for dist in self.dists.values()]
        return None if any(size is None for size in sizes) else math.prod(len(size) for size in sizes)


def space_path(name_or_path: str) -> Path:
    """A name in conf/tune, or a path to a yaml file."""
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise BadSpace(f"space file {path} does not exist: give a file, or a name of {known_spaces()}")
        return path
    path = CONF_TUNE / f"{name_or_path}.yaml"
    if not path.is_file():
        raise BadSpace(f"no space {name_or_path!r} in conf/tune: pick one of {known_spaces()}"
                       f"{did_you_mean(name_or_path, [p.stem for p in CONF_TUNE.glob('*.yaml')])}, or give a path")
    return path


def known_spaces() -> str:
    return ", ".join(sorted(path.stem for path in CONF_TUNE.glob("*.yaml"))) or "(none)"


def load_space(name_or_path: str, trials: Optional[int] = None, storage: Optional[str] = None,
               out: Optional[str] = None) -> Space:
    """Reads and checks a space file; ``trials``, ``storage`` and ``out`` (the command line's) replace its own."""
    path = space_path(name_or_path)
    try:
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as error:  # noqa: BLE001 - YAML's and OmegaConf's errors: their first line
        raise BadSpace(f"{path} cannot be read: {str(error).splitlines()[0]}") from error
    if not isinstance(raw, dict):
        raise BadSpace(f"{path} holds a {type(raw).__name__}, not a mapping of keys: see conf/tune/fusion_proxy.yaml")
    if path.stem in SUBCOMMANDS:
        raise BadSpace(f"{path}: a space may not be called {path.stem} (a subcommand of python -m src.tune): rename it")
    for key, value in (("trials", trials), ("storage", storage), ("out", out)):
        if value is not None:
            raw[key] = value
    values, where = check_keys(raw, path), f"{path}: "
    out = Path(check_optional_text(values.out, "out", where) or f"tuning/{path.stem}")
    dists = {key: check_dist(key, spec, where) for key, spec in check_mapping(values.space, "space", where).items()}
    space = Space(name=path.stem, path=path, arms=check_arms(values.arms, where), dists=dists,
                  trials=check_trials(values.trials, where), base=check_base(values.base, where),
                  metric=check_type(values.metric, str, "metric", where), pruner=check_pruner(values.pruner, where),
                  sampler=check_sampler(values.sampler, where), enqueue=values.enqueue,
                  storage=check_optional_text(values.storage, "storage", where) or f"sqlite:///{out / 'optuna.db'}",
                  out=out)
    return check_enqueue(space)


def check_optional_text(value: Any, key: str, where: str) -> Optional[str]:
    return None if value is None else check_type(value, str, key, where)


def check_keys(raw: Dict[str, Any], path: Path) -> SpaceFile:
    names = [item.name for item in dataclasses.fields(SpaceFile)]
    for key in raw:
        if key not in names:
            raise BadSpace(f"{path}: unknown key {key!r}{did_you_mean(key, names)}: a space file takes "
                           f"{', '.join(names)}")
    required = [item.name for item in dataclasses.fields(SpaceFile)
                if item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING]
    missing = [key for key in required if raw.get(key) is None]
    if missing:
        raise BadSpace(f"{path}: {', '.join(missing)} missing: a space file needs {', '.join(required)} "
                       f"(see conf/tune/fusion_proxy.yaml)")
    return SpaceFile(**raw)


def check_mapping(value: Any, key: str, where: str) -> Dict[str, Any]:
    if not isinstance(value, dict) or not value:
        raise BadSpace(f"{where}{key}: give a non-empty mapping, e.g. {EXAMPLES[key]}")
    return value


EXAMPLES = {"space": "space: {optim.lr: {float: [1.0e-4, 3.0e-3], log: true}}",
            "arms": "arms: {fusion: [none, cross]}"}


def check_trials(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadSpace(f"{where}trials: {value!r}: must be an integer >= 1 (complete + pruned trials per arm), "
                       f"e.g. trials: 16 or --trials 16")
    return value


def check_base(value: Any, where: str) -> List[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadSpace(f"{where}base: {value!r}: give a list of overrides, e.g. [+experiment=cpu/proxy, "
                       f"data.selection=0.2]")
    return value


def check_arms(value: Any, where: str) -> List[Tuple[Tuple[str, Any], ...]]:
    arms = check_mapping(value, "arms", where)
    for key, values in arms.items():
        if not isinstance(values, list) or not values:
            raise BadSpace(f"{where}arms.{key}: {values!r}: give a non-empty list of values, e.g. {key}: [a, b]")
        if len(set(map(repr, values))) < len(values):
            raise BadSpace(f"{where}arms.{key}: {values!r} repeats a value: list each once")
        for item in values:
            if isinstance(item, (list, dict)):
                raise BadSpace(f"{where}arms.{key}: {item!r}: an arm value is one scalar (a group option, a number)")
    keys = list(arms)
    return [tuple(zip(keys, combination)) for combination in itertools.product(*arms.values())]


def check_pruner(value: Any, where: str) -> Dict[str, Any]:
    return check_choice_block(value, "pruner", {name: tuple(keys) for name, keys in PRUNERS.items()}, where)


def check_sampler(value: Any, where: str) -> Dict[str, Any]:
    return check_choice_block(value, "sampler", SAMPLERS, where)


def check_choice_block(value: Any, key: str, kinds: Dict[str, Tuple[str, ...]], where: str) -> Dict[str, Any]:
    """``{type: NAME, KEY: integer, ...}`` of a pruner or sampler; every value is an integer (or a null seed)."""
    here = f"{where}{key}"
    if not isinstance(value, dict) or value.get("type") not in kinds:
        got = value.get("type") if isinstance(value, dict) else value
        raise BadSpace(f"{here}: type {got!r}{did_you_mean(got, kinds)}: pick one of {', '.join(kinds)}, "
                       f"e.g. {key}: {{type: {next(iter(kinds))}}}")
    allowed = kinds[value["type"]]
    for name, item in value.items():
        if name == "type":
            continue
        if name not in allowed:
            raise BadSpace(f"{here}: unknown key {name!r}{did_you_mean(name, allowed)}: {value['type']} takes "
                           f"{', '.join(allowed) or 'no other key'}")
        minimum = PRUNERS.get(value["type"], {}).get(name, (0, None))[0] if key == "pruner" else 0
        if not (item is None and name == "seed") and (isinstance(item, bool) or not isinstance(item, int)
                                                       or item < minimum):
            raise BadSpace(f"{here}.{name}: {item!r}: must be an integer >= {minimum}")
    return dict(value)


def check_enqueue(space: Space) -> Space:
    """The ``enqueue`` param sets: each a mapping of space keys, every value inside its distribution."""
    where = f"{space.path}: enqueue"
    if not isinstance(space.enqueue, list):
        raise BadSpace(f"{where}: {space.enqueue!r}: give a list of mappings, e.g. enqueue: [{{optim.lr: 1.0e-3}}]")
    for number, params in enumerate(space.enqueue):
        if not isinstance(params, dict) or not params:
            raise BadSpace(f"{where}[{number}]: {params!r}: give a mapping of space keys to values")
        for key, value in params.items():
            if key not in space.dists:
                raise BadSpace(f"{where}[{number}]: {key!r} is not a key of space{did_you_mean(key, space.dists)}")
            if not space.dists[key].contains(value):
                dist = space.dists[key]
                inside = dist.choices if dist.kind == "categorical" else f"[{dist.low}, {dist.high}]"
                raise BadSpace(f"{where}[{number}]: {key}={value!r} is outside its {dist.kind}: {inside}")
    return space
