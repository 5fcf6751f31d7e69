"""``python -m analysis.sequential``: run more seeds of an ablation only while they are needed.

``--ablation NAME | --preset PRESET --max-seeds N [--block N] [--looks N...] [--margin M] [--ref R]
[--sweep-dir DIR] [--with DIR...] [--max-blocks N] [--dry-run] [HYDRA_OVERRIDE...]``

At each look it collates the seeds every row has (those of ``--with``, e.g. the shipped results, and its own sweep
dir), gives each row its verdict under the ablation's sequential design (``analysis/stats/sequential.py``,
``analysis/stats/verdict.py``; the margin and design from experiments/ablations.yaml) and stops when every row is
better, worse or equivalent, or the design's seed budget is spent. Otherwise it runs the next block of seeds of the
preset (``python -m src.run -m +experiment=PRESET seed=...``, into the sweep dir, finished jobs skipped) and looks
again. The seeds are the next ones up, so a kill and the same command again resume the block; ``--with`` runs take
part only where they are the same jobs (the same config but for the seed), which it checks. ``make run`` is
``--ablation fusion --preset make_run --with results/cpu/fusion``: the newcomer's own seed blocks added to the
shipped ones in the one design, each seed's rows on one machine.

Exit status: 0 when it stopped by the design (every row resolved, or the budget spent: the table says which rows
are inconclusive), 1 when a block's sweep failed (its own exit status is printed), 2 on bad input.
"""
import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pandas as pd
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from analysis.collate import warn
from analysis.paper.ablations import spec
from analysis.paper.options import add_verdict_arguments, apply_verdict_settings
from analysis.present.plots import write_plots
from analysis.present.tables import markdown_report, write_tables
from analysis.runs.local import load_runs
from analysis.runs.records import NoRunsError, candidate_factors
from analysis.stats.ablation import Ablation, analyse
from analysis.stats.sequential import Design
from analysis.stats.summary import varying_factors
from analysis.stats.verdict import INCONCLUSIVE, RESOLVED
from src.config import register_configs
from src.identity import NOT_GROUPED, canonical, group_hash
from src.sweeps.generate import CONF, compose_presets, grid
from src.train.record_io import RESULTS_FILE

# One folder per job named by its overrides (conf/hydra/sweep/by_overrides.yaml, which not every preset takes): a
# block's seeds land beside the earlier ones instead of over them, and a rerun skips the finished jobs.
BY_OVERRIDES = ["hydra.sweep.subdir=${hydra.job.override_dirname}",
                "hydra.job.config.override_dirname.exclude_keys=[experiment,train.force,train.threads,train.progress]"]


class SequentialError(ValueError):
    """Input the design cannot run with: the message names it and the fix."""


@dataclass
class Look:
    seeds: int  # seeds every row has
    ablation: Optional[Ablation]  # None: fewer than two seeds
    open_rows: List[str]
    runs: pd.DataFrame  # the runs of those seeds


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m analysis.sequential",
                                     description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("--preset", help="the conf/experiment preset each block runs (default: --ablation's)")
    parser.add_argument("--ref", metavar="NAME", help="the reference row (default: --ablation's, else as collate "
                        "picks it)")
    parser.add_argument("--sweep-dir", type=Path, help="where the blocks run (default multirun/PRESET)")
    parser.add_argument("--with", dest="with_dirs", nargs="+", type=Path, default=[], metavar="DIR",
                        help="earlier seeds of the same jobs that take part in the design (e.g. results/cpu/fusion)")
    parser.add_argument("--max-blocks", type=int, metavar="N", help="run at most N blocks now (the design is "
                        "unchanged: run the command again to go on)")
    parser.add_argument("--dry-run", action="store_true", help="look once and say what the next block would run")
    parser.add_argument("overrides", nargs="*", metavar="HYDRA_OVERRIDE",
                        help="passed to each block's sweep (e.g. hydra/launcher=basic); not seed=, which the design "
                        "sets")
    add_verdict_arguments(parser)
    args = parser.parse_args(argv)
    if args.max_blocks is not None and args.max_blocks < 0:
        parser.error(f"--max-blocks {args.max_blocks}: give 0 or more blocks")
    apply_verdict_settings(parser, args)
    if args.design is None:
        parser.error("no sequential design: give --ablation NAME (an experiments/ablations.yaml entry with a design) "
                     "or --max-seeds N (and --block, --looks, --margin)")
    entry = spec(args.ablation) if args.ablation else None
    args.preset = args.preset or (entry.preset if entry else None)
    if not args.preset:
        parser.error("give --preset PRESET (the conf/experiment preset each block runs) or --ablation NAME")
    return args


def swept_rows(preset: str, overrides: Sequence[str]) -> Dict[str, List[str]]:
    """The preset's grid less the seed, with the overrides' own sweeps (fusion=a,b) in place of the preset's."""
    rows = {key: values for key, values in grid(compose_presets([preset])[preset]).items() if key != "seed"}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.get_key_element()
        if key == "seed":
            raise SequentialError(f"{override.input_line}: the design picks the seeds (the next block up); drop it")
        if key in rows or override.is_sweep_override():
            rows[key] = (list(override.sweep_string_iterator()) if override.is_sweep_override()
                         else [override.get_value_element_as_str()])
    return rows


def column_of(key: str) -> str:
    """The runs' column of a swept key: ``fusion`` of ``fusion``, ``lr`` of ``optim.lr``, ``tuned_fusion`` of
    ``+tuned_fusion`` (a group the preset adds)."""
    return key.lstrip("+~").split(".")[-1]


def load(dirs: Sequence[Path], rows: Dict[str, List[str]], warn=warn) -> pd.DataFrame:
    """The completed runs of the preset's rows under ``dirs`` (the others, e.g. a row the preset does not run,
    left out)."""
    existing = [folder for folder in dirs if folder.exists()]
    if not existing:
        return pd.DataFrame()
    try:
        runs = load_runs(existing, warn=warn).runs
    except NoRunsError:
        return pd.DataFrame()
    for key, values in rows.items():
        column = column_of(key)
        if column not in runs:
            raise SequentialError(f"the runs under {', '.join(map(str, existing))} have no {column!r} to tell the "
                                  f"preset's rows ({key}) apart")
        runs = runs[runs[column].astype(str).isin(values)]
    return runs


def job_config(preset: str, row: Dict[str, str], overrides: Sequence[str]) -> Dict[str, Any]:
    """The resolved config this command would run for one row (the seed aside), as src.run composes it."""
    register_configs()
    plain = [override for override in overrides if not override.lstrip("+~").startswith("hydra")]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"+experiment={preset}", *plain,
                                           *[f"{key}={value}" for key, value in row.items()]])
    return OmegaConf.to_container(cfg, resolve=True)


def flat(config: Any, prefix: str = "") -> Dict[str, Any]:
    if not isinstance(config, dict):
        return {prefix.rstrip("."): config}
    return {key: value for name, item in config.items() for key, value in flat(item, f"{prefix}{name}.").items()}


def check_joinable(preset: str, runs: pd.DataFrame, rows: Dict[str, List[str]], overrides: Sequence[str]) -> None:
    """Before any block: each row's --with runs must be the jobs this command would run but for the seed (their W&B
    group hash, which leaves out the seed and the device, is equal); otherwise the error names the keys."""
    for _, run in runs.drop_duplicates([column_of(key) for key in rows]).iterrows():
        row = {key: str(run[column_of(key)]) for key in rows}
        recorded = json.loads((Path(run["run_dir"]) / RESULTS_FILE).read_text())["config"]
        planned = job_config(preset, row, overrides)
        if group_hash(recorded) != group_hash(planned):
            ours, theirs = flat(canonical(planned, leave_out=NOT_GROUPED)), flat(canonical(recorded,
                                                                                         leave_out=NOT_GROUPED))
            keys = sorted(key for key in set(ours) | set(theirs) if ours.get(key) != theirs.get(key))
            shown = ", ".join(f"{key} {theirs.get(key)} there, {ours.get(key)} here" for key in keys[:4])
            more = ", ..." if len(keys) > 4 else ""
            named = ", ".join(f"{key}={value}" for key, value in row.items())
            raise SequentialError(f"the --with run {run['run_dir']} is not the job this command runs for {named} "
                                  f"({shown}{more}): drop --with to start a design of your own, or the override "
                                  f"that changed the job")


def complete_seeds(runs: pd.DataFrame, rows: Dict[str, List[str]]) -> List[int]:
    """The seeds every row of the grid has, ascending."""
    if runs.empty:
        return []
    columns = [column_of(key) for key in rows]
    expected = 1
    for values in rows.values():
        expected *= len(values)
    per_seed = runs.groupby("seed").apply(lambda group: len(group.drop_duplicates(columns)), include_groups=False)
    return sorted(int(seed) for seed, count in per_seed.items() if count == expected)


def take_look(runs: pd.DataFrame, seeds: List[int], rows: Dict[str, List[str]], ref: Optional[str],
              margin: Optional[float], design: Design) -> Look:
    if len(seeds) < 2:
        return Look(len(seeds), None, [], runs)
    used = runs[runs["seed"].isin(seeds)]
    factors = varying_factors(used, candidate_factors(used))
    swept = {column_of(key) for key in rows}
    foreign = [factor for factor in factors if factor not in swept and splits_further(used, sorted(swept), factor)]
    if foreign:
        raise SequentialError(f"the runs differ in {', '.join(foreign)} as well as in the swept "
                              f"{', '.join(sorted(swept))}: the --with runs and this sweep are not the same jobs "
                              f"(drop --with to start the design from your own seeds, or the override that "
                              f"changed them)")
    # the factors that name the rows: the swept keys, or what they set (+tuned_fusion=cross sets the fusion and its
    # recipe: the row is the fusion)
    ablation = analyse(used, factors, ref=ref, warn=warn, margin=margin, design=design)
    table = ablation.table
    open_rows = list(table.loc[table["verdict"] == INCONCLUSIVE, "label"])
    return Look(len(seeds), ablation, open_rows, used)


def splits_further(runs: pd.DataFrame, swept: List[str], factor: str) -> bool:
    """Whether ``factor`` tells runs apart that the swept keys do not: not when the sweep sets it (a group option
    that sets the fusion and its recipe)."""
    columns = [column for column in swept if column in runs]
    if not columns:
        return True
    return (runs[columns + [factor]].astype(str).drop_duplicates().shape[0] >
            runs[columns].astype(str).drop_duplicates().shape[0])


def next_seeds(runs: pd.DataFrame, complete: List[int], design: Design) -> List[int]:
    """The seeds of the next block: the lowest ones not yet complete, as many as the next look needs."""
    wanted = design.next_look(len(complete)) - len(complete)
    found, seed = [], 0
    while len(found) < wanted:
        if seed not in complete:
            found.append(seed)
        seed += 1
    return found


def run_block(preset: str, seeds: List[int], sweep_dir: Path, overrides: Sequence[str]) -> int:
    command = [sys.executable, "-m", "src.run", "-m", f"+experiment={preset}", f"seed={','.join(map(str, seeds))}",
               f"hydra.sweep.dir={sweep_dir}", *BY_OVERRIDES, *overrides]
    print(f"$ {' '.join(command[1:])}", flush=True)
    return subprocess.call(command)


def describe(look: Look, design: Design) -> str:
    if look.ablation is None:
        return f"look at {look.seeds} seed(s): too few to test"
    table = look.ablation.table
    verdicts = "; ".join(f"{row.label} {row.verdict}" for row in table.itertuples() if row.verdict in
                         (*RESOLVED, INCONCLUSIVE))
    return f"look at {look.seeds} of at most {design.max_seeds} seeds: {verdicts}"


def finish(look: Look, out: Path, design: Design) -> None:
    if look.ablation is None:
        print("no verdict: fewer than two seeds ran")
        return
    write_tables(look.ablation, out)
    write_plots(look.runs, look.ablation, out)
    print()
    print(markdown_report(look.ablation))
    if look.open_rows and look.seeds >= design.max_seeds:
        print(f"\nStopped at the design's budget ({design.max_seeds} seeds): {', '.join(look.open_rows)} "
              f"inconclusive; no claim of a difference or of none.")
    elif not look.open_rows:
        print(f"\nStopped at {look.seeds} seeds: every row is resolved.")
    print(f"wrote the tables and plots to {out}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    design, preset = args.design, args.preset
    sweep_dir = args.sweep_dir or Path("multirun") / preset
    try:
        rows = swept_rows(preset, args.overrides)
    except (SequentialError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        if args.with_dirs:
            check_joinable(preset, load(args.with_dirs, rows, warn=lambda message: None), rows, args.overrides)
    except SequentialError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    blocks = 0
    while True:
        try:
            runs = load([*args.with_dirs, sweep_dir], rows)
            seeds = complete_seeds(runs, rows)
            look = take_look(runs, seeds, rows, args.ref, args.margin, design)
        except SequentialError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(describe(look, design), flush=True)
        resolved = look.ablation is not None and not look.open_rows
        if resolved or look.seeds >= design.max_seeds:
            finish(look, sweep_dir / "analysis", design)
            return 0
        block = next_seeds(runs, seeds, design)
        if args.dry_run or (args.max_blocks is not None and blocks >= args.max_blocks):
            print(f"next block: seeds {', '.join(map(str, block))} of +experiment={preset} "
                  f"({'dry run' if args.dry_run else f'--max-blocks {args.max_blocks} reached'}; the same command "
                  f"without it goes on)")
            if look.ablation is not None:
                finish(look, sweep_dir / "analysis", design)
            return 0
        status = run_block(preset, block, sweep_dir, args.overrides)
        if status != 0:
            print(f"error: the block's sweep exited {status}: see its table above; the same command again resumes "
                  f"it (finished jobs are skipped)", file=sys.stderr)
            return 1
        blocks += 1


if __name__ == "__main__":
    sys.exit(main())
