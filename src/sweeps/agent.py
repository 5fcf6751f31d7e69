"""Runs started by a W&B sweep agent (``WANDB_SWEEP_ID`` set): the command line made fit for Hydra, and a run
dir that follows from the sweep and run ids, so that a re-queued run resumes its ``last.pt``.

A first launch passes the sweep's values (``fusion=none model.patch_size=[4,8]``). A run re-queued after
preemption passes its whole W&B config, written with Python's ``str()`` (``data.root=None``,
``model.patch_size=[4, 8]``, ``train.compile=False``), plus ``_wandb={...}`` (or ``--_wandb=...``), W&B's own
bookkeeping, which Hydra rejects. Here ``_wandb`` and the derived ``arch/...`` keys are dropped, values are
rewritten in Hydra's override syntax, and a config group Hydra's defaults do not list (``experiment``) gets
``+``. A key the schema does not know still reaches Hydra, whose error names it.
"""
import ast
import os
import re
from pathlib import Path
from typing import Any, List, Optional

import yaml

CONF = Path(__file__).resolve().parents[2] / "conf"
WANDB_KEYS = ("_wandb", "--_wandb")
DERIVED_PREFIXES = ("arch/",)  # logged by src.run itself (src.train.record.arch_keys), not config
PLAIN = re.compile(r"^[A-Za-z_/][\w./\-]*$")  # a string Hydra reads as that string, unquoted
KEYWORDS = ("null", "true", "false", "none", "inf", "nan")
requeued = False  # set by agent_argv: this process is a re-queued run (its argv had ``_wandb``)


def sweep_run_dir(environ=os.environ) -> Optional[Path]:
    """``multirun/wandb/<sweep_id>/<run_id>`` under an agent (the agent sets both ids), else None."""
    sweep_id, run_id = environ.get("WANDB_SWEEP_ID"), environ.get("WANDB_RUN_ID")
    if not sweep_id or not run_id:
        return None
    return Path("multirun") / "wandb" / sweep_id / run_id


def hydra_value(value: Any) -> str:
    """A Python value in Hydra's override syntax."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{hydra_value(item)}" for key, item in value.items()) + "}"
    text = str(value)
    if PLAIN.match(text) and text.lower() not in KEYWORDS:
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def rewrite_value(text: str) -> str:
    """``None``/``True``/``[4, 8]``/``{}`` (Python's str of a W&B value) as Hydra reads them; other text as is."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text  # a bare word (fusion=none, data.interpolation=bicubic): Hydra reads it as that string
    if value is None or isinstance(value, (bool, list, tuple, dict)):
        return hydra_value(value)
    return text


def default_groups() -> List[str]:
    """The groups ``conf/config.yaml``'s defaults choose, in its order (not its ``override hydra/...``)."""
    defaults = yaml.safe_load((CONF / "config.yaml").read_text())["defaults"]
    keys = [next(iter(entry)) for entry in defaults if isinstance(entry, dict)]
    return [key for key in keys if not key.startswith("override ")]


def rewrite_argument(argument: str, groups: List[str]) -> Optional[str]:
    """One ``key=value`` of the agent's command line as a Hydra override; None drops it."""
    key, separator, value = argument.partition("=")
    if key in WANDB_KEYS or key.startswith(DERIVED_PREFIXES):
        return None
    if not separator or key.startswith(("+", "~", "-", "hydra.")):
        return argument
    if "." not in key and key not in groups and (CONF / key).is_dir():
        key = "+" + key  # a group the defaults do not list (experiment): Hydra must add it
    return f"{key}={rewrite_value(value)}"


def agent_argv(argv: List[str], environ=os.environ) -> List[str]:
    """``argv`` made fit for Hydra under a sweep agent (unchanged otherwise), with ``hydra.run.dir`` set from
    the sweep and run ids unless the command line sets it."""
    global requeued
    run_dir = sweep_run_dir(environ)
    if run_dir is None:
        return list(argv)
    requeued = is_requeue(argv)
    groups = default_groups()
    rewritten = [argv[0]] + [arg for arg in (rewrite_argument(a, groups) for a in argv[1:]) if arg is not None]
    if not any(arg.startswith("hydra.run.dir=") for arg in rewritten):
        rewritten.append(f"hydra.run.dir={run_dir}")
    return rewritten


def is_requeue(argv: List[str]) -> bool:
    """A run the agent re-queued after preemption: it passes W&B's ``_wandb`` key."""
    return any(arg.partition("=")[0] in WANDB_KEYS for arg in argv)
