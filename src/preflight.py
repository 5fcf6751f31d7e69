"""Every input checked before work: the command line against the schema before Hydra composes it
(``check_command_line``, usage errors), then the composed config's values and the files it names
(``check_config``), before anything is built or written. Each error is one line naming the key, the value and the
fix; ``src.run`` prints it without a traceback (``HYDRA_FULL_ERROR=1`` shows one) and exits 2 or 1.

The command-line half imports neither torch nor timm: ``--help`` and a typo answer in a second or two.
"""
import dataclasses
import difflib
import logging
import math
import tempfile
import typing
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from omegaconf import OmegaConf

from src.config import Config
from src.variant_table import VARIANTS

log = logging.getLogger(__name__)
CONF = Path(__file__).resolve().parents[1] / "conf"


class BadInput(ValueError):
    """A value or file the run cannot use: exit status 1."""


class UsageError(BadInput):
    """A command line that does not compose: an unknown key or group option, a value of the wrong type. Exit 2."""


# -- the command line ----------------------------------------------------------------------------------------
def schema_fields(cls=Config, prefix: str = "") -> Iterator[Tuple[str, Any, bool, Any]]:
    """(dotted key, type, optional, default or None) for every field of the schema, nested dataclasses walked."""
    for item in dataclasses.fields(cls):
        kind, optional = unwrap_optional(item.type)
        default = item.default if isinstance(item.default, (int, float, str)) and item.default != "???" else None
        yield prefix + item.name, kind, optional, default
        if dataclasses.is_dataclass(kind):
            yield from schema_fields(kind, f"{prefix}{item.name}.")


def unwrap_optional(kind) -> Tuple[Any, bool]:
    if typing.get_origin(kind) is typing.Union:
        rest = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return rest[0], len(rest) < len(typing.get_args(kind))
    return kind, False


SCHEMA = {key: (kind, optional, default) for key, kind, optional, default in schema_fields()}


def group_options() -> Dict[str, List[str]]:
    """The config groups and their options: ``conf/GROUP/**.yaml`` and the model variants."""
    groups = {folder.name: sorted(str(path.relative_to(folder).with_suffix("")) for path in folder.rglob("*.yaml"))
              for folder in CONF.iterdir() if folder.is_dir() and folder.name != "hydra"}
    groups["model"] = sorted({*groups.get("model", []), *VARIANTS})
    return groups


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def known_key(key: str) -> bool:
    """A schema key, or one under a dict (``fusion.options.*``) or list (``model.depth.0``) field."""
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        entry = SCHEMA.get(".".join(parts[:end]))
        if entry is None:
            continue
        origin = typing.get_origin(entry[0])
        return end == len(parts) or origin in (dict, typing.Dict) or entry[0] is Any or (
            origin in (list, typing.List) and all(part.isdigit() for part in parts[end:]))
    return False


BOOL_WORDS = ("true", "false", "yes", "no", "on", "off", "y", "n", "1", "0")


def type_problem(kind, optional: bool, value) -> Optional[str]:
    """What the value is not, where OmegaConf would refuse it for the field's type; None when it fits."""
    if value is None:
        return None if optional else "a value (it cannot be null)"
    origin = typing.get_origin(kind)
    if origin in (list, typing.List):
        return None if isinstance(value, list) else "a list, in brackets"
    if origin in (dict, typing.Dict):
        return None if isinstance(value, dict) else "a mapping, in braces"
    if isinstance(value, (list, dict)) and kind in (int, float, bool, str):
        return f"one {kind.__name__} value, not a {type(value).__name__}"
    if kind is bool and not (isinstance(value, bool) or str(value).lower() in BOOL_WORDS):
        return "true or false"
    if kind is int and not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
        return "an integer"
    if kind is float and not isinstance(value, (int, float)):
        return "a number"
    return None


def override_values(override) -> List[Any]:
    """The values an override sets (each of a sweep's); [] where they cannot be listed (interval, glob)."""
    if not override.is_sweep_override():
        return [override.value()]
    try:
        return list(override.sweep_iterator())
    except Exception:  # noqa: BLE001 - interval and glob sweeps are Hydra's to check
        return []


def check_override(override, groups: Dict[str, List[str]]) -> None:
    key = override.key_or_group
    if key.startswith("hydra") or (override.is_delete() and key in groups):
        return
    if key in groups:
        for option in override_values(override):
            if str(option) not in groups[key]:
                raise UsageError(f"Could not find '{key}/{option}': {key}= takes one of {', '.join(groups[key])}"
                                 f"{did_you_mean(str(option), groups[key])}")
        return
    if not known_key(key):
        raise UsageError(f"{override.input_line}: {key} is not a config key"
                         f"{did_you_mean(key, [*SCHEMA, *groups]) or ' (python -m src.run --cfg job lists them)'}")
    if key not in SCHEMA or override.is_delete():
        return
    kind, optional, default = SCHEMA[key]
    for value in override_values(override):
        problem = type_problem(kind, optional, value)
        if problem:
            example = f", e.g. {key}={str(default).lower() if isinstance(default, bool) else default}" \
                if default is not None else ""
            raise UsageError(f"{override.input_line}: {key} takes {problem}{example}")


def check_command_line(args: List[str]) -> None:
    """``python -m src.run ARGS`` (after the W&B agent's rewrite): every key is the schema's (a near miss is
    named), every group option exists, every value has its key's type, and the run dir can be written."""
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = get_args_parser().parse_args(args)  # argparse's own usage errors exit 2 here, as under Hydra
    parser, overrides = OverridesParser.create(), []
    for line in parsed.overrides:
        try:
            overrides += parser.parse_overrides([line])
        except Exception as error:  # noqa: BLE001 - Hydra's parse error says what in the override is wrong
            raise UsageError(f"{line}: {' '.join(str(error).split())}") from error
    groups = group_options()
    for override in overrides:
        check_override(override, groups)
    if not (parsed.help or parsed.hydra_help or parsed.cfg or parsed.info or parsed.shell_completion):
        check_output_dir(overrides, parsed.multirun)


def check_output_dir(overrides, multirun: bool) -> None:
    """The run dir (sweep dir under ``-m``) can be made and written: Hydra makes it before any of our code runs."""
    values = {override.key_or_group: override.value() for override in overrides if not override.is_sweep_override()}
    multirun = multirun or str(values.get("hydra.mode", "")).upper() == "MULTIRUN"
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    folder = str(values.get(key, "multirun" if multirun else "outputs")).split("${")[0] or "."
    problem = unwritable(Path(folder).expanduser().absolute())
    if problem:
        raise BadInput(f"{key}={values.get(key, folder)} cannot be written: {problem}; pick a folder you can write, "
                       f"e.g. {key}=outputs/NAME, or run from one")


def unwritable(folder: Path) -> Optional[str]:
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"Not a directory: {existing} is a file, not a folder"
    try:
        with tempfile.TemporaryDirectory(dir=existing, prefix=".write-check-"):
            return None
    except OSError as error:
        return f"{existing} is not writable ({error.strerror or error})"


# -- the composed config -------------------------------------------------------------------------------------
def at_least(low: float) -> Callable[[Any], bool]:
    return lambda value: value >= low and math.isfinite(value)


def between(low: float, high: float, closed_high: bool = False) -> Callable[[Any], bool]:
    return lambda value: low <= value < high or (closed_high and value == high)


def one_of(*choices) -> Callable[[Any], bool]:
    return lambda value: value in choices


def optional(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or test(value)


def positive(value) -> bool:
    return value > 0 and math.isfinite(value)


# (key, test, what it must be and the fix); each test sees the value the composed config holds
VALUE_RULES = [
    ("seed", between(0, 2**32), "pick an integer from 0 to 2**32 - 1 (numpy's seed range), e.g. seed=0"),
    ("train.epochs", at_least(1), "must be >= 1, e.g. train.epochs=10"),
    ("train.batch_size", at_least(1), "must be >= 1, e.g. train.batch_size=64"),
    ("train.eval_batch_size", optional(at_least(1)), "must be >= 1, or null (2 x train.batch_size)"),
    ("train.threads", optional(at_least(1)), "must be >= 1 torch threads, or null (torch's default)"),
    ("train.ckpt_every_steps", at_least(0), "must be >= 0: a number of optimizer steps, or 0 (off)"),
    ("train.grad_accum_steps", optional(at_least(1)), "must be >= 1 micro-batches per step, or null (1)"),
    ("train.ema_decay", between(0, 1), "must be in [0, 1), e.g. train.ema_decay=0.9998"),
    ("train.progress", one_of("auto", "bar", "log"), "pick auto (a bar on a terminal), bar or log"),
    ("train.on_busy", one_of("skip", "wait"), "pick skip (the other process runs the job) or wait"),
    ("optim.lr", optional(positive), "must be a finite number > 0, e.g. optim.lr=1e-3, or null (optim.base_lr "
                                     "x train.batch_size / optim.lr_base_size)"),
    ("optim.base_lr", positive, "must be a finite number > 0, e.g. optim.base_lr=5e-4"),
    ("optim.lr_base_size", at_least(1), "must be >= 1, e.g. optim.lr_base_size=512"),
    ("optim.weight_decay", at_least(0), "must be a finite number >= 0, e.g. optim.weight_decay=0.05"),
    ("optim.clip_grad", optional(positive), "must be a finite norm > 0, or null (no clipping)"),
    ("sched.warmup_epochs", at_least(0), "must be >= 0 (0: no warm-up)"),
    ("sched.warmup_lr", at_least(0), "must be a finite number >= 0, e.g. sched.warmup_lr=1e-6"),
    ("sched.min_lr", at_least(0), "must be a finite number >= 0, e.g. sched.min_lr=1e-5"),
    ("sched.cooldown_epochs", at_least(0), "must be >= 0 (0: no cooldown)"),
    ("data.num_classes", at_least(1), "must be >= 1: the dataset's class count"),
    ("data.image_size", optional(at_least(1)), "must be >= 1 pixels, or null (the model's img_size)"),
    ("data.val_fraction", lambda value: 0 < value < 1, "must be in (0, 1), e.g. data.val_fraction=0.2"),
    ("data.num_train", at_least(1), "must be >= 1 images"),
    ("data.num_val", at_least(1), "must be >= 1 images"),
    ("data.limit_train", optional(at_least(1)), "must be >= 1 samples, or null (all of them)"),
    ("data.limit_val", optional(at_least(1)), "must be >= 1 samples, or null (all of them)"),
    ("data.num_workers", optional(at_least(0)), "use 0 (load in the training process), a count of worker "
                                                "processes, or null (auto: the CPUs this rank has on CUDA, 0 on "
                                                "the CPU)"),
    ("data.reprob", between(0, 1, closed_high=True), "must be a probability in [0, 1] (0: no random erasing)"),
    ("data.remode", optional(one_of("const", "rand", "pixel")), "pick const, rand, pixel, or null (const)"),
    ("data.hflip", between(0, 1, closed_high=True), "must be a probability in [0, 1]"),
    ("data.color_jitter", at_least(0), "must be >= 0 (0: off)"),
    ("data.scale", lambda value: len(value) == 2 and 0 < value[0] <= value[1] <= 1,
     "must be [low, high] with 0 < low <= high <= 1, e.g. data.scale=[0.08,1.0]"),
    ("data.interpolation", one_of("bicubic", "bilinear", "nearest", "box", "hamming", "lanczos", "random"),
     "pick bicubic, bilinear, nearest, box, hamming, lanczos or random"),
    ("data.crop_pct", between(0, 1, closed_high=True), "must be in (0, 1], e.g. data.crop_pct=0.875"),
    ("data.mixup", at_least(0), "must be >= 0 (mixup's alpha; 0: off)"),
    ("data.cutmix", at_least(0), "must be >= 0 (cutmix's alpha; 0: off)"),
    ("data.smoothing", between(0, 1), "must be in [0, 1) (label smoothing; 0: off)"),
    ("model.drop_path_rate", between(0, 1), "must be in [0, 1), e.g. model.drop_path_rate=0.1"),
    ("fusion.layers", optional(at_least(1)), "must be >= 1 fusion layers, or null (the strategy's default)"),
    ("logger.name", one_of("wandb", "tensorboard", "none"), "pick wandb, tensorboard or none"),
    ("logger.mode", one_of("auto", "online", "offline", "disabled"), "pick auto, online, offline or disabled"),
    ("logger.init_timeout", positive, "must be > 0 seconds, e.g. logger.init_timeout=30"),
    ("logger.log_every_n_steps", at_least(1), "must be >= 1 steps, e.g. logger.log_every_n_steps=10"),
]


def check_values(cfg) -> None:
    for key, test, fix in VALUE_RULES:
        value = OmegaConf.select(cfg, key)
        try:
            good = test(OmegaConf.to_container(value) if OmegaConf.is_config(value) else value)
        except TypeError:  # a value of a type the rule cannot compare: the rule's text says what it takes
            good = False
        if not good:
            shown = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
            raise BadInput(f"{key}={shown!r}: {fix}")
    if cfg.sched.warmup_epochs >= cfg.train.epochs:
        log.warning("sched.warmup_epochs=%s is not below train.epochs=%s: the lr never leaves its warm-up",
                    cfg.sched.warmup_epochs, cfg.train.epochs)


def check_choices(cfg) -> None:
    """Names the training code looks up: model, fusion, optimizer, scheduler, device and precision."""
    from timm.optim import list_optimizers

    from src.models import fusion_names
    from src.train.build import SCHEDULERS, check_amp, resolve_device

    if cfg.model.name not in VARIANTS:
        raise BadInput(f"unknown model.name={cfg.model.name!r}: pick one of {', '.join(sorted(VARIANTS))}"
                       f"{did_you_mean(cfg.model.name, VARIANTS)}")
    if cfg.fusion.name not in fusion_names():
        raise BadInput(f"unknown fusion.name={cfg.fusion.name!r}: pick one of {', '.join(fusion_names())}")
    if cfg.optim.name not in list_optimizers():
        raise BadInput(f"optim.name={cfg.optim.name!r} is not a timm optimizer: pick e.g. adamw or sgd "
                       f"(timm.optim.list_optimizers() lists them){did_you_mean(cfg.optim.name, list_optimizers())}")
    if cfg.sched.name not in SCHEDULERS:
        raise BadInput(f"sched.name={cfg.sched.name!r}: pick one of {', '.join(SCHEDULERS)}")
    model_size = cfg.model.img_size or VARIANTS[cfg.model.name]["img_size"]
    if cfg.data.image_size is not None and cfg.data.image_size != model_size:
        raise BadInput(f"data.image_size={cfg.data.image_size} but {cfg.model.name} takes {model_size}x{model_size} "
                       f"images: set data.image_size=null (follow the model) or model.img_size={cfg.data.image_size}")
    check_amp(cfg.train.amp, resolve_device(cfg.train.device))
    check_architecture(cfg)


def check_architecture(cfg) -> None:
    """The model's own checks (a patch size that does not divide the canvas, a dagger stem a patch size cannot
    take, widths and heads), run by building it on the meta device: no memory, no values, and in a fork of the
    global generator, so that the run's own draws are the same as without the check."""
    import timm
    import torch

    from src.train.build import model_kwargs

    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        timm.create_model(cfg.model.name, **model_kwargs(cfg))


def check_files(cfg) -> None:
    """The checkpoint to resume, the weights to start from and the dataset on disk."""
    from src.data import check_data_source
    from src.models.pretrained import check_pretrained_file, weights_file_problem
    from src.train.build import pretrained_kwargs

    resume = cfg.train.resume
    if resume not in ("auto", "never"):
        path = Path(resume).expanduser()
        fix = "give train.resume=PATH of a last.pt or best.pt this harness wrote, auto (the run dir's last.pt) or never"
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "does not exist"
            raise BadInput(f"train.resume={resume}: checkpoint {path} {what}; {fix}")
        problem = weights_file_problem(path)
        if problem:
            raise BadInput(f"train.resume={resume} {problem}; it is not a checkpoint of this harness: {fix}")
    pretrained_kwargs(cfg)  # "required" without a PATH
    if cfg.model.pretrained not in (None, "hub"):
        check_pretrained_file(cfg.model.pretrained)
    check_data_source(cfg.data)


def check_config(cfg) -> None:
    """The composed config's values, the names it looks up and the files it points at: ``BadInput`` (or the
    builders' own ``ValueError``) before anything is built or written."""
    check_values(cfg)
    check_choices(cfg)
    check_files(cfg)
