"""The space against the real config tree, before any trial: each arm's base and arm overrides compose with Hydra's
compose API on conf/ (as ``python -m src.run`` would compose them) and pass the harness's own checks
(``src.preflight``); every space key is a config key (or group) whose rule and type every value of the distribution
meets; the metric is one the composed runs log every epoch; the pruner can judge a trial within a run's epochs."""
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from src import preflight
from src.config import FIELDS, register_configs
from src.data import check_selection

from .dists import Dist
from .errors import BadSpace, did_you_mean
from .overrides import Arm, arm_folder, arm_label, recipe_overrides, study_name, trial_overrides
from .space import PRUNERS, Space

log = logging.getLogger(__name__)
# The metrics a space may maximise: each epoch row of results.json holds them when the composed config says so.
METRICS = ("selection_top1", "top1", "top5", "ema_top1")


@dataclass(frozen=True)
class ArmPlan:
    """One arm of the space, checked: its study, its folder and what its composed runs train."""
    arm: Arm
    label: str  # fusion=cross
    study: str  # SPACE:fusion=cross
    folder: Path  # OUT/fusion=cross: the run dirs, study.json
    epochs: int  # what a run trains: train.epochs + sched.cooldown_epochs
    tags: Tuple[str, ...]  # the composed logger.tags, which each trial's tags extend


def check_space(space: Space) -> List[ArmPlan]:
    """One ``ArmPlan`` per arm, or ``BadSpace`` naming the key and the fix."""
    register_configs()
    groups = preflight.group_options()
    with initialize_config_dir(config_dir=str(preflight.CONF), version_base="1.3"):
        return [check_arm(space, arm, groups) for arm in space.arms]


def check_arm(space: Space, arm: Arm, groups) -> ArmPlan:
    cfg = composed(space, arm, recipe_overrides(space.base, arm, {}))
    for dist in space.dists.values():
        check_key(space, dist, cfg, groups)
    check_metric(space, cfg, arm_label(arm))
    epochs = cfg.train.epochs + cfg.sched.cooldown_epochs
    check_pruner_epochs(space, epochs)
    folder, tags = space.out / arm_folder(arm), tuple(cfg.logger.tags or ())
    sample = {key: dist.values()[0] for key, dist in space.dists.items()}
    harness_check(space, arm, trial_overrides(space.base, arm, sample, folder.absolute() / "ID",
                                              [*tags, "tune", "trial=0"]), "a trial's command line")
    return ArmPlan(arm, arm_label(arm), study_name(space.name, arm), folder, epochs, tags)


def composed(space: Space, arm: Arm, overrides: List[str]) -> DictConfig:
    harness_check(space, arm, overrides, "base and arm")
    try:
        cfg = compose("config", overrides=overrides)
    except Exception as error:  # noqa: BLE001 - Hydra's composition errors: their first line
        raise BadSpace(f"{space.path}: base and arm {arm_label(arm)} do not compose: "
                       f"{str(error).strip().splitlines()[0]}") from error
    try:
        preflight.check_values(cfg)
        check_selection(cfg.data)  # the size of the selection split against the training data's
    except (preflight.BadInput, ValueError) as error:
        raise BadSpace(f"{space.path}: base and arm {arm_label(arm)}: {error}") from error
    return cfg


def harness_check(space: Space, arm: Arm, overrides: List[str], what: str) -> None:
    """``python -m src.run``'s own check of a command line: keys, group options, types, the run dir."""
    try:
        preflight.check_command_line(list(overrides))
    except preflight.BadInput as error:
        raise BadSpace(f"{space.path}: {what} of arm {arm_label(arm)}: {error}") from error


def check_key(space: Space, dist: Dist, cfg: DictConfig, groups) -> None:
    here = f"{space.path}: space.{dist.key}"
    if dist.key in groups:
        if dist.kind != "categorical":
            raise BadSpace(f"{here}: {dist.key} is a config group: give its options as categorical: [...]")
        for value in dist.choices:
            if str(value) not in groups[dist.key]:
                raise BadSpace(f"{here}: {value!r} is not a {dist.key} option: pick from "
                               f"{', '.join(groups[dist.key])}{did_you_mean(value, groups[dist.key])}")
        return
    if not preflight.known_key(dist.key) or OmegaConf.select(cfg, dist.key, default=KeyError) is KeyError:
        raise BadSpace(f"{here} is not a config key{did_you_mean(dist.key, [*preflight.SCHEMA, *groups])} "
                       f"(python -m src.run --cfg job lists them)")
    if dist.key not in preflight.SCHEMA:
        return  # under a free-form mapping (fusion.options.*): the run checks it
    kind, optional, _ = preflight.SCHEMA[dist.key]
    if kind is int and dist.kind == "float":
        raise BadSpace(f"{here} is an integer key: sample it with int: [{int(dist.low)}, {int(dist.high)}]")
    rule = FIELDS[dist.key].metadata.get("rule")
    for value in dist.values():
        problem = preflight.type_problem(kind, optional, value)
        if problem:
            raise BadSpace(f"{here}: {value!r}: {dist.key} takes {problem}")
        if rule is not None and not rule.holds(value):
            raise BadSpace(f"{here}: {dist.key}={value!r}: {rule.text}")


def check_metric(space: Space, cfg: DictConfig, label: str) -> None:
    here = f"{space.path}: metric {space.metric}"
    if space.metric not in METRICS:
        raise BadSpace(f"{here} is not logged every epoch: pick one of {', '.join(METRICS)}"
                       f"{did_you_mean(space.metric, METRICS)}")
    if space.metric == "selection_top1" and not OmegaConf.select(cfg, "data.selection", default=None):
        raise BadSpace(f"{here} is logged only with a selection split, and arm {label} has data.selection="
                       f"{OmegaConf.select(cfg, 'data.selection', default=None)}: add data.selection=0.2 to base (a "
                       f"fifth of the training images held out for selection, fixed by data.split_seed)")
    if space.metric == "ema_top1" and not cfg.train.ema:
        raise BadSpace(f"{here} is logged only with train.ema=true: add it to base")
    if space.metric in ("top1", "top5") and label == arm_label(space.arms[0]):
        log.warning("metric %s is the test split's: the best recipe's test top-1 is then optimistic; select on "
                    "selection_top1 with data.selection=0.2 instead", space.metric)


def first_judged_epoch(pruner: dict) -> int:
    """The first epoch count at which the pruner can stop a trial."""
    settings = {name: pruner.get(name, default) for name, (_, default) in PRUNERS[pruner["type"]].items()}
    if pruner["type"] == "successive_halving":
        return settings["min_resource"] * settings["reduction_factor"] ** settings["min_early_stopping_rate"]
    if pruner["type"] == "hyperband":
        return settings["min_resource"]
    if pruner["type"] == "median":
        return settings["n_warmup_steps"] + 1
    return 0


def check_pruner_epochs(space: Space, epochs: int) -> None:
    if space.pruner["type"] == "none":
        return
    first = first_judged_epoch(space.pruner)
    if first >= epochs:
        raise BadSpace(f"{space.path}: pruner {space.pruner['type']} judges a trial first after epoch {first}, "
                       f"and a run has {epochs} epochs: no trial could be pruned; lower its first rung "
                       f"(min_resource, n_warmup_steps) or use pruner: {{type: none}}")
    if space.pruner.get("max_resource", epochs) > epochs:
        raise BadSpace(f"{space.path}: pruner.max_resource={space.pruner['max_resource']} is above the runs' "
                       f"{epochs} epochs: drop it (it defaults to the epochs)")


