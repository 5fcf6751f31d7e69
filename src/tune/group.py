"""``python -m src.tune best SPACE --write-group NAME``: each arm's best recipe as an option of a config group,
``conf/NAME/<arm value>.yaml``, so that the recipes are trained on many seeds by one ordinary sweep
(``python -m src.run -m +NAME=a,b,c seed=...``, the preset ``conf/experiment/fusion_tuned_cpu.yaml``): the option
sets the arm (a group's option through the defaults list, a plain key as a value) and its recipe (the space's keys
only: the base the trials ran with, their selection split included, stays theirs). The files say
which trial they come from and are rewritten, not edited by hand."""
from pathlib import Path
from typing import Any, Dict, List

import yaml
from omegaconf import OmegaConf

from src.preflight import CONF

from .errors import BadSpace
from .overrides import override


def option_text(space_name: str, arm: str, recipe: Dict[str, Any], groups: List[str]) -> str:
    key, value = arm.split("=", 1)
    header = (f"# @package _global_\n# The best recipe of {arm} in python -m src.tune {space_name}: trial "
              f"{recipe['trial']}, {recipe['metric']} {recipe['value']:.2f} (written by `python -m src.tune best "
              f"{space_name} --write-group`; do not edit by hand)\n")
    # the recipe alone: the space's keys, not the base the trials ran with (their selection split, their threads)
    settings = OmegaConf.to_container(OmegaConf.from_dotlist([override(key, value)
                                                              for key, value in recipe["params"].items()]))
    if key in groups:
        body = {"defaults": [{f"override /{key}": value}], **settings}
    else:
        body = {**OmegaConf.to_container(OmegaConf.from_dotlist([arm])), **settings}
    return header + yaml.safe_dump(body, sort_keys=False)


def write_group(space_name: str, best: Dict[str, Dict[str, Any]], group: str, conf: Path = CONF) -> List[Path]:
    """One option file per arm under ``conf/<group>/``, named by the arm's value; returns the files."""
    if not group.isidentifier():
        raise BadSpace(f"--write-group {group!r}: a config group name is one word, e.g. --write-group tuned_fusion")
    groups = [path.name for path in conf.iterdir() if path.is_dir()]
    folder = conf / group
    folder.mkdir(exist_ok=True)
    written = []
    for arm, recipe in best.items():
        if arm.count("=") != 1 or "," in arm:
            raise BadSpace(f"arm {arm!r}: --write-group takes arms of one key (fusion=cross), one option each")
        path = folder / f"{arm.split('=', 1)[1]}.yaml"
        path.write_text(option_text(space_name, arm, recipe, groups))
        written.append(path)
    return written
