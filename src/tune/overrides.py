"""Hydra override text for a trial: each value written so that Hydra's parser reads back exactly that value (a path
with ``=`` or ``,``, a tag with ``:``, text that looks like a number), the arm's label and folder, the trial's run dir
(named by a hash of what it runs, so that a retried trial resumes the same run dir) and its command line."""
import hashlib
import json
import math
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from hydra.core.override_parser.overrides_parser import OverridesParser

Arm = Tuple[Tuple[str, Any], ...]  # (key, value) pairs: (("fusion", "cross"),)


def hydra_value(value: Any) -> str:
    """``value`` as the right-hand side of a Hydra override that parses back to ``value``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else
                                                         ("inf" if value > 0 else "-inf"))
    if isinstance(value, list):
        written = "[" + ",".join(hydra_value(item) for item in value) + "]"
        if not parses_back(written, value):
            raise ValueError(f"{value!r} cannot be written as a Hydra override value")
        return written
    text = str(value)
    if parses_back(text, text):
        return text
    quoted = "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if not parses_back(quoted, text):
        raise ValueError(f"{text!r} cannot be written as a Hydra override value")
    return quoted


def parses_back(written: str, value: Any) -> bool:
    try:
        override = OverridesParser.create().parse_overrides([f"key={written}"])[0]
    except Exception:  # noqa: BLE001 - Hydra's grammar refuses it: quote it
        return False
    return not override.is_sweep_override() and override.value() == value and type(override.value()) is type(value)


def override(key: str, value: Any) -> str:
    return f"{key}={hydra_value(value)}"


def arm_overrides(arm: Arm) -> List[str]:
    return [override(key, value) for key, value in arm]


def arm_label(arm: Arm) -> str:
    """``fusion=cross`` (``,``-joined for several keys): the study's suffix and, with ``/`` made ``_``, its folder."""
    return ",".join(f"{key}={value}" for key, value in arm)


def arm_folder(arm: Arm) -> str:
    return arm_label(arm).replace("/", "_")


def study_name(space_name: str, arm: Arm) -> str:
    return f"{space_name}:{arm_label(arm)}"


def run_id(base: Sequence[str], arm: Arm, params: Dict[str, Any]) -> str:
    """The run dir's name: a hash of everything the trial runs (base, arm, params), never the trial's number, so
    that a retried trial (the same params) resumes its run dir, and a changed base gets a new one."""
    text = json.dumps({"base": list(base), "arm": arm_overrides(arm), "params": params}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def recipe_overrides(base: Sequence[str], arm: Arm, params: Dict[str, Any]) -> List[str]:
    """The base, the arm and the params, a base override of a key the arm or the params set left out (theirs win)."""
    later = [*arm_overrides(arm), *(override(key, value) for key, value in params.items())]
    keys = {line.split("=")[0].lstrip("+~") for line in later}
    return [*(line for line in base if line.split("=")[0].lstrip("+~") not in keys), *later]


def trial_overrides(base: Sequence[str], arm: Arm, params: Dict[str, Any], run_dir: Path,
                    tags: Sequence[str]) -> List[str]:
    """A normal ``src.run`` job: its recipe, its run dir and its W&B tags. A second launch on a run dir still held
    (a retry while the first shuts down) waits for it (``train.on_busy=wait``)."""
    return [*recipe_overrides(base, arm, params), override("hydra.run.dir", str(run_dir)),
            override("logger.tags", list(tags)), "train.on_busy=wait"]


def run_command(overrides: Sequence[str]) -> List[str]:
    """How a user reruns the trial by hand."""
    return [sys.executable, "-m", "src.run", *overrides]


def shell_line(command: Sequence[str]) -> str:
    """The command as a shell line: an argument that holds Hydra's single quotes or brackets goes in double quotes."""
    def quoted(arg: str) -> str:
        if re.fullmatch(r"[\w@%+=:,./-]+", arg):
            return arg
        return f'"{arg}"' if not set(arg) & set('"$`\\!') else shlex.quote(arg)

    return " ".join(map(quoted, command))
