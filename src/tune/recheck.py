"""``python -m src.tune recheck SPACE [--top 2] [--seeds 1,2] [--arm KEY=VALUE ...]``: how much of a chosen recipe's
edge is selection noise. Each arm's best ``--top`` complete trials (ranked by their tuning value: one seed, seed 0)
are trained again on new seeds exactly as the trials were (the space's base: the same selection split) and judged on
the same selection split. A recipe's winner's curse is its tuning value minus its new seeds' mean; the order of the
top trials holds, or the best was the luckiest of near equals. Each trial's seeds are one ordinary sweep
(``OUT/ARM/recheck/<run id>/<job>``, finished jobs skipped on a rerun); the table goes to ``OUT/recheck.md`` and
``OUT/recheck.json``."""
import argparse
import json
import subprocess
import sys
from pathlib import Path
from statistics import mean
from typing import Any, Dict, List, Optional

import pandas as pd

from src.train.files import write_atomic
from src.train.record_io import RESULTS_FILE

from .errors import BadSpace
from .overrides import arm_folder, arm_label, override, recipe_overrides
from .report import summaries
from .space import Space, load_space

RECHECK_FILE = "recheck"
LOG_FILE = "recheck.log"


def top_trials(summary: Dict[str, Any], top: int) -> List[Dict[str, Any]]:
    """The arm's ``top`` complete trials, the highest tuning value first (the earlier of equals)."""
    complete = [row for row in summary["trials"] if row["state"] == "complete" and row["value"] is not None]
    return sorted(complete, key=lambda row: (-row["value"], row["number"]))[:top]


def recheck_command(space: Space, arm, trial: Dict[str, Any], seeds: List[int], folder: Path,
                    study: str) -> List[str]:
    """The trial's recipe (base, arm, params: what it ran) on ``seeds``, two jobs at a time, into ``folder``."""
    return [sys.executable, "-m", "src.run", "-m", *recipe_overrides(space.base, arm, trial["params"]),
            f"seed={','.join(map(str, seeds))}", "hydra/launcher=parallel", override("hydra.sweep.dir", str(folder)),
            override("logger.tags", [f"study={study}", "recheck"])]


def seed_values(folder: Path, metric: str) -> Dict[int, float]:
    """Each finished job's seed and its last epoch's ``metric``."""
    found = {}
    for path in sorted(folder.glob(f"*/{RESULTS_FILE}")):
        record = json.loads(path.read_text())
        if record.get("status") == "completed":
            found[int(record["seed"])] = record["history"][-1][metric]
    return found


def recheck(space: Space, top: int, seeds: List[int], arms: Optional[List[str]] = None) -> List[Dict[str, Any]]:
    rows = []
    for summary in summaries(space):
        if arms and summary["arm"] not in arms:
            continue
        arm = next(arm for arm in space.arms if arm_label(arm) == summary["arm"])
        for rank, trial in enumerate(top_trials(summary, top), start=1):
            folder = space.out / arm_folder(arm) / "recheck" / Path(trial["run_dir"]).name
            command = recheck_command(space, arm, trial, seeds, folder, summary["study"])
            print(f"{summary['arm']}, rank {rank} (trial {trial['number']}): {' '.join(command[2:])}", flush=True)
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / LOG_FILE, "a") as log:  # the sweep's console output, for when it fails
                done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
            values = seed_values(folder, summary["metric"])
            missing = sorted(set(seeds) - set(values))
            if done.returncode != 0 or missing:
                raise BadSpace(f"the recheck of {summary['arm']} trial {trial['number']} did not finish seeds "
                               f"{missing or seeds} (exit {done.returncode}): see {folder / LOG_FILE}; the same "
                               f"command resumes it")
            new = [values[seed] for seed in seeds]
            rows.append({"arm": summary["arm"], "rank": rank, "trial": trial["number"], "metric": summary["metric"],
                         "tuning_value": trial["value"], "seeds": seeds, "new_values": new, "new_mean": mean(new),
                         "curse": trial["value"] - mean(new), "params": trial["params"]})
    return rows


def table(rows: List[Dict[str, Any]]) -> str:
    """One line per rechecked trial, then per arm whether the best kept its place on the new seeds."""
    frame = pd.DataFrame([{"arm": row["arm"], "rank": row["rank"], "trial": row["trial"],
                           "tuning (seed 0)": row["tuning_value"],
                           f"new seeds {','.join(map(str, row['seeds']))}": ", ".join(f"{v:.2f}" for v in
                                                                                       row["new_values"]),
                           "new mean": row["new_mean"], "tuning - new mean": row["curse"]} for row in rows])
    lines = [frame.to_markdown(index=False, floatfmt=".2f")]
    for arm, group in frame.groupby("arm", sort=False):
        if len(group) > 1:
            held = group["new mean"].iloc[0] >= group["new mean"].iloc[1:].max()
            lines.append(f"- {arm}: the best trial {'kept' if held else 'lost'} its place on the new seeds")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.tune recheck", description=__doc__.splitlines()[0])
    parser.add_argument("space", help="a name in conf/tune, or a path to a space file")
    parser.add_argument("--top", type=int, default=2, help="the best N complete trials of each arm (default 2)")
    parser.add_argument("--seeds", default="1,2", help="the new seeds, comma-separated (default 1,2: the trials "
                                                       "ran seed 0)")
    parser.add_argument("--arm", action="append", default=[], metavar="KEY=VALUE", help="only this arm (repeatable)")
    parser.add_argument("--out", help="the out dir the search wrote (default: the space file's out)")
    args = parser.parse_args(argv)
    try:
        seeds = [int(seed) for seed in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds {args.seeds!r}: give whole numbers, comma-separated, e.g. --seeds 1,2")
    if args.top < 1:
        parser.error(f"--top {args.top}: recheck at least the best trial, e.g. --top 2")
    try:
        space = load_space(args.space, out=args.out)
        rows = recheck(space, args.top, seeds, args.arm)
    except BadSpace as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    text = table(rows)
    for suffix, content in ((".md", f"# {space.name}: the top trials on new seeds\n\n{text}\n"),
                            (".json", json.dumps(rows, indent=2) + "\n")):
        write_atomic(space.out / f"{RECHECK_FILE}{suffix}", lambda file, content=content: file.write(content.encode()))
    print(text)
    return 0
