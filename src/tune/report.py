"""``python -m src.tune.report SPACE [--out DIR]`` (or ``python -m src.tune report SPACE``): every arm's
``study.json`` in one Markdown table (arm, best params, best metric, trials complete/pruned/failed, trial-epochs and
CPU hours of the search, and of an exhaustive grid), printed and written to ``OUT/report.md``.

``python -m src.tune best SPACE [--out DIR]``: per arm, the Hydra overrides of the best recipe, printed and written
to ``OUT/best.json`` as ``{arm: {overrides: [...], value: ..., trial: ..., metric: ...}}``, for the next step (the
best recipe trained on many seeds): ``python -m src.run -m $(overrides) seed=0,1,2,...``.

Both read only the study.json files (no storage): they work on a copy of the out dir.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pandas as pd

from src.train.files import write_atomic

from .costs import STUDY_FILE, hours
from .errors import BadSpace
from .group import write_group
from .overrides import arm_folder
from .space import Space, load_space

REPORT_FILE = "report.md"
BEST_FILE = "best.json"


def summaries(space: Space) -> List[Dict[str, Any]]:
    """The arms' study.json files, in the space's arm order; an arm without one is left out."""
    found = []
    for arm in space.arms:
        path = space.out / arm_folder(arm) / STUDY_FILE
        if path.is_file():
            found.append(json.loads(path.read_text()))
    if not found:
        raise BadSpace(f"no {STUDY_FILE} under {space.out}: run python -m src.tune {space.name} first (or give the "
                       f"out dir it wrote with --out)")
    return found


def report_table(found: List[Dict[str, Any]]) -> str:
    rows = []
    for summary in found:
        best, total, grid = summary["best"] or {}, summary["totals"], summary["grid"]
        rows.append({"arm": summary["arm"],
                     "best params": " ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                                             for key, value in (best.get("params") or {}).items()) or "-",
                     f"best {summary['metric']}": best.get("value"),
                     "complete/pruned/failed": f"{total['complete']}/{total['pruned']}/{total['fail']}",
                     "trial-epochs": total["trial_epochs"], "CPU h": hours(total["cpu_s"]),
                     "grid trial-epochs": grid["trial_epochs"] if grid["trial_epochs"] is not None else "-",
                     "grid CPU h": hours(grid["cpu_s"])})
    return pd.DataFrame(rows).to_markdown(index=False, floatfmt=".2f")


def best_recipes(found: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    return {summary["arm"]: {"overrides": summary["best"]["overrides"], "params": summary["best"]["params"],
                             "value": summary["best"]["value"], "trial": summary["best"]["trial"],
                             "metric": summary["metric"]}
            for summary in found if summary["best"] is not None}


def write_text(path: Path, text: str) -> Path:
    write_atomic(path, lambda file: file.write(text.encode()))
    return path


def write_best(space: Space, found: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Dict[str, Any]]:
    best = best_recipes(found if found is not None else summaries(space))
    write_text(space.out / BEST_FILE, json.dumps(best, indent=2) + "\n")
    return best


def report(space: Space) -> str:
    """Every arm's study.json in one Markdown table, printed and written to OUT/report.md."""
    text = report_table(summaries(space))
    write_text(space.out / REPORT_FILE, f"# {space.name}\n\n{text}\n")
    return text


def print_best(space: Space, group: Optional[str] = None) -> None:
    """Per arm, the Hydra overrides of the best recipe, printed and written to OUT/best.json (and, with
    --write-group NAME, as conf/NAME/<arm>.yaml: src/tune/group.py)."""
    best = write_best(space)
    for arm, recipe in best.items():
        print(f"{arm}: {' '.join(recipe['overrides'])}    # {recipe['metric']} {recipe['value']:.2f}, "
              f"trial {recipe['trial']}")
    print(f"written: {space.out / BEST_FILE}", file=sys.stderr)
    if group:
        for path in write_group(space.name, best, group):
            print(f"written: {path}", file=sys.stderr)


def main(argv: Optional[List[str]] = None, command: str = "report") -> int:
    parser = argparse.ArgumentParser(prog=f"python -m src.tune {command}",
                                     description=(report if command == "report" else print_best).__doc__)
    parser.add_argument("space", help="a name in conf/tune, or a path to a space file")
    parser.add_argument("--out", help="the out dir the search wrote (default: the space file's out)")
    if command == "best":
        parser.add_argument("--write-group", metavar="NAME", help="also write each arm's recipe as conf/NAME/ARM.yaml")
    args = parser.parse_args(argv)
    try:
        space = load_space(args.space, out=args.out)
        if command == "report":
            print(report(space))
        else:
            print_best(space, args.write_group)
    except BadSpace as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(command="report"))
