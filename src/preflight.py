"""Every input checked before work: the command line against the schema before Hydra composes it
(``check_command_line``, usage errors), then the composed config's values and the files it names
(``check_config``), before anything is built or written. Each error is one line naming the key, the value and the
fix; ``src.run`` prints it without a traceback (``HYDRA_FULL_ERROR=1`` shows one) and exits 2 or 1.

The command-line half imports neither torch nor timm: ``--help`` and a typo answer in a second or two.
"""
import difflib
import logging
import tempfile
import typing
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import OmegaConf

from src.config import FIELDS, schema_fields
from src.variant_table import VARIANTS

log = logging.getLogger(__name__)
CONF = Path(__file__).resolve().parents[1] / "conf"


class BadInput(ValueError):
    """A value or file the run cannot use: exit status 1."""


class UsageError(BadInput):
    """A command line that does not compose: an unknown key or group option, a value of the wrong type. Exit 2."""


# -- the command line ----------------------------------------------------------------------------------------
PRESET_GROUPS = ("experiment",)  # no default holds it: +experiment=NAME adds one (scales: a preset adds it)
SCHEMA = {key: (kind, optional, field.default if isinstance(field.default, (int, float, str)) and
                field.default != "???" else None) for key, field, kind, optional in schema_fields()}


def group_options() -> Dict[str, List[str]]:
    """The config groups and their options: ``conf/GROUP/**.yaml`` and the model variants."""
    groups = {folder.name: sorted(str(path.relative_to(folder).with_suffix("")) for path in folder.rglob("*.yaml"))
              for folder in CONF.iterdir() if folder.is_dir() and folder.name not in ("hydra", "tune")}
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


def check_usage(override, multirun: bool) -> None:
    """Two slips Hydra answers with its own multi-line text: a preset group without ``+``, a comma list (a sweep)
    without ``-m``."""
    key = override.key_or_group
    if key in PRESET_GROUPS and override.type.name == "CHANGE" and not key.startswith("hydra"):
        raise UsageError(f"{override.input_line}: {key} is a preset group, added to the defaults: write "
                         f"+{override.input_line}")
    if override.is_sweep_override() and not multirun and not key.startswith("hydra"):
        raise UsageError(f"{override.input_line}: a comma list is a sweep, which runs under -m: python -m src.run -m "
                         f"{override.input_line} (for one value that holds a comma, quote it: {key}='...')")


# hydra/launcher's options: ours (conf/hydra/launcher) and the ones Hydra and its installed plugins bring
HYDRA_LAUNCHERS = ("basic", "joblib", "submitit_local", "submitit_slurm")


def check_hydra_overrides(overrides: List[Any]) -> None:
    """``hydra/launcher=...`` and ``hydra.launcher.*`` (or any other ``hydra.`` key), composed alone with Hydra's
    config before Hydra starts: its own errors there are several lines long (a list of search paths, a type error
    with its object type); here they are one."""
    launchers = sorted(path.stem for path in (CONF / "hydra" / "launcher").glob("*.yaml"))
    for override in overrides:
        if override.key_or_group == "hydra/launcher" and not override.is_delete():
            for option in override_values(override):
                if str(option) not in (*launchers, *HYDRA_LAUNCHERS):
                    raise UsageError(f"Could not find 'hydra/launcher/{option}': hydra/launcher= takes one of "
                                     f"{', '.join(launchers)} (or Hydra's {', '.join(HYDRA_LAUNCHERS)})"
                                     f"{did_you_mean(str(option), launchers)}")
    lines = [override.input_line for override in overrides
             if override.key_or_group.startswith("hydra") and not override.is_sweep_override()]
    if not any(line.split("=")[0].lstrip("+~").startswith(("hydra.launcher", "hydra/launcher")) for line in lines):
        return
    from hydra import compose, initialize_config_dir

    from src.config import register_configs

    register_configs()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            compose("config", overrides=lines, return_hydra_config=True)
    except Exception as error:  # noqa: BLE001 - Hydra's and OmegaConf's errors: the first line of each, joined
        causes = [error] + ([error.__cause__] if error.__cause__ else [])
        raise UsageError(": ".join(str(cause).strip().splitlines()[0].rstrip(".") for cause in causes)) from error


def check_command_line(args: List[str]) -> None:
    """``python -m src.run ARGS`` (after the W&B agent's rewrite): every key is the schema's (a near miss is
    named), every group option exists, every value has its key's type, and the run dir can be written."""
    # Hydra's own parser, so that flags and overrides split exactly as @hydra.main will split them: Hydra 1.3 has
    # no public one (a parser of our own would drift from Hydra's flags); tests/test_bad_inputs.py pins the result
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
        check_usage(override, parsed.multirun or any(o.key_or_group == "hydra.mode" and str(o.value()).upper() ==
                                                     "MULTIRUN" for o in overrides))
    check_hydra_overrides(overrides)
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
def check_values(cfg) -> None:
    """Every value against its field's rule (``src.config``)."""
    for key, field in FIELDS.items():
        rule = field.metadata.get("rule")
        value = OmegaConf.select(cfg, key)
        shown = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        if rule is not None and not rule.holds(shown):
            raise BadInput(f"{key}={shown!r}: {rule.text}")
    if cfg.sched.warmup_epochs >= cfg.train.epochs:
        log.warning("sched.warmup_epochs=%s is not below train.epochs=%s: the lr never leaves its warm-up",
                    cfg.sched.warmup_epochs, cfg.train.epochs)


def check_choices(cfg) -> None:
    """Names the training code looks up: model, optimizer, scheduler, device, precision and the input size (the
    fusion's name with the architecture), and the kernels ``train.deterministic`` asks of that device."""
    from timm.optim import list_optimizers

    from src.train.build import SCHEDULERS, check_amp, input_size, resolve_device
    from src.train.determinism import check_deterministic

    if cfg.model.name not in VARIANTS:
        raise BadInput(f"unknown model.name={cfg.model.name!r}: pick one of {', '.join(sorted(VARIANTS))}"
                       f"{did_you_mean(cfg.model.name, VARIANTS)}")
    if cfg.optim.name not in list_optimizers():
        raise BadInput(f"optim.name={cfg.optim.name!r} is not a timm optimizer: pick e.g. adamw or sgd "
                       f"(timm.optim.list_optimizers() lists them){did_you_mean(cfg.optim.name, list_optimizers())}")
    if cfg.sched.name not in SCHEDULERS:
        raise BadInput(f"sched.name={cfg.sched.name!r}: pick one of {', '.join(SCHEDULERS)}")
    input_size(cfg, cfg.model.img_size or VARIANTS[cfg.model.name]["img_size"])
    device = resolve_device(cfg.train.device)
    check_amp(cfg.train.amp, device)
    check_architecture(cfg)
    check_deterministic(cfg, device.type)


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
    from src.data import check_data_source, check_selection, resolve_num_classes
    from src.models.pretrained import weights_file_problem
    from src.train.build import check_pretrained
    from src.train.warm_start import check_hub, checkpoint_file

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
    check_pretrained(cfg)  # "required" without a PATH
    if cfg.model.pretrained == "hub":
        check_hub(cfg.model.name)
    elif cfg.model.pretrained is not None:
        checkpoint_file(cfg.model.pretrained)
    check_data_source(cfg.data)
    resolve_num_classes(cfg.data)  # a data.num_classes the data disagrees with fails here, before any work
    check_selection(cfg.data)  # a selection split that leaves nothing to train on


def check_config(cfg) -> None:
    """The composed config's values, the names it looks up and the files it points at: ``BadInput`` (or the
    builders' own ``ValueError``) before anything is built or written."""
    check_values(cfg)
    check_choices(cfg)
    check_files(cfg)
