"""The types of the ``results.json`` fields the analysis reads (``src.train.record.RunRecord``), checked before a
record becomes a row: a hand-edited, half-migrated or foreign file would otherwise crash the loader (a string
where a dict is read) or the report. ``field_problem`` names the first field of the wrong type.

Null is allowed where older results have nothing (a field's ``required`` says otherwise). Accuracies and losses
may also be a string or a non-finite number: such a value is not a wrong type but a missing measurement, counted
and named by ``metrics`` instead of skipping the run.
"""
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional


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


def list_of(expected: str, each: Rule) -> Rule:
    return Rule(lambda value: isinstance(value, list), expected, each=each)


TEXT = Rule(lambda value: isinstance(value, str), "a string")
INT = Rule(is_int, "an int")
NUMBER = Rule(is_number, "a number")
FLAG = Rule(lambda value: isinstance(value, bool), "true or false")
INTS = list_of("a list of ints, one per branch", Rule(is_int, "an int", required=True))
# strings pass here: metrics.py counts them as not measured (json.dumps(default=str) writes a float32 as one)
METRIC = Rule(lambda value: is_number(value) or isinstance(value, str), "a number")
METRICS = list_of("a list of numbers, one per branch", METRIC)
DEPTH = list_of("a list of per-encoder block counts", list_of("a list of block counts (N, M, L)",
                                                              Rule(is_int, "an int", required=True)))
ARCHITECTURE = dict(img_size=INT, patch_size=INTS, embed_dim=INTS, depth=DEPTH, class_token=FLAG)
EPOCH_ROW = dict_of("an epoch row (a dict)", required=True, epoch=Rule(is_int, "an int", required=True),
                    top1_branch=METRICS,
                    **{name: METRIC for name in ("train_loss", "val_loss", "top1", "top5", "lr", "epoch_time_s",
                                                 "images_per_s", "data_wait_frac", "ema_top1")})
RECORD = dict_of(
    "a dict", status=Rule(TEXT.accepts, "a string", required=True),
    reason=TEXT, config=dict_of("a dict (the resolved config)", required=True,
                                model=dict_of("a dict (the model config)", **ARCHITECTURE),
                                fusion=dict_of("a dict (the fusion config)")),
    choices=dict_of("a dict of Hydra group choices"),
    overrides=list_of("a list of override strings", Rule(TEXT.accepts, "a string", required=True)),
    config_hash=TEXT, seed=Rule(is_int, "an int", required=True),
    model=dict_of("a dict (the model summary)", name=TEXT, fusion=TEXT, num_heads=INTS, fusion_layers=INT,
                  num_branches=INT, **ARCHITECTURE),
    data_sizes=dict_of("a dict of data sizes", num_train=INT, num_val=INT),
    final=dict_of("a dict of final metrics", top1=METRIC, top5=METRIC, loss=METRIC, top1_branch=METRICS),
    best=dict_of("a dict of best-epoch metrics", top1=METRIC, top5=METRIC, epoch=INT, top1_branch=METRICS),
    history=list_of("a list of epoch rows", EPOCH_ROW),
    provenance=dict_of("a dict of provenance", git_sha=TEXT, git_dirty=FLAG, torch=TEXT, timm=TEXT, python=TEXT,
                       device=TEXT, threads=INT, peak_memory_mb=NUMBER),
    wandb=dict_of("a dict of W&B run info"),
    **{name: NUMBER for name in ("params_m", "gmacs", "fusion_params_m", "fusion_gmacs", "wall_time_s")})
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
