"""``python -m analysis.collate RUN_DIR... [--wandb ENTITY/PROJECT [--sweep ID] [--group G] [--tag T]] [--out DIR]
[--curve LABEL,...] [--ablation NAME] [--margin POINTS] [--max-seeds N --looks N... --spending S]``

Loads every run under the dirs (or in the W&B project), each (config, seed) once, groups by the factors that
vary, aggregates over seeds, compares every row with the reference row (``cross``, ``--ref NAME``, or the
best), gives each row a verdict (better, worse, equivalent within --margin, inconclusive; under the sequential
design its seeds were added by, where one is given), prints the Markdown table with its legend, verdict,
seeds-needed and detectable-difference lines, and writes
ablation.{md,tex,csv}, runs.csv and the plots to ``--out`` (default ``<first RUN_DIR>/analysis``). A corrupt,
foreign or malformed results.json is skipped with one warning naming the file and the field; a run without a
finite final top-1 (NaN, inf, a string) is left out of the table and named in one warning (``analysis.runs``).
Exits 1, saying where it looked, when there is no run at all (every file skipped included); exits 2, listing the
rows and writing nothing, when ``--ref`` or ``--curve`` matches no row.

Rows that are not a result yet are flagged (``analysis/stats/flags.py``): "not converged" when the trend of a run's
validation top-1 over its last --converge-epochs epochs moves it by more than --converge-tol points and more than
the validation set's binomial noise explains, "seeds disagree" when the spread over seeds is larger than the other
rows' and the validation noise predict (--max-seed-std where neither is known) or a seed lies more than
--collapse-gap points below the others' median. A flagged row shows the flag instead of its top-1, is compared
with nothing and is never the best row; a line under the table says what each flag means and how to fix it.
"""
import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from analysis.paper.options import add_verdict_arguments, apply_verdict_settings
from analysis.present.plots import write_plots
from analysis.present.tables import markdown_report, write_tables
from analysis.runs.local import load_runs
from analysis.runs.records import Collection, NoRunsError
from analysis.runs.wandb_api import WandbFilter, load_wandb_runs
from analysis.stats.ablation import analyse
from analysis.stats.flags import DEFAULT_CHECKS, Checks
from analysis.stats.reference import UnknownReferenceError
from analysis.stats.summary import varying_factors


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m analysis.collate", description=__doc__.splitlines()[2])
    parser.add_argument("run_dirs", nargs="*", type=Path, help="Hydra run or multirun dirs (searched recursively)")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the runs from the W&B API instead")
    parser.add_argument("--sweep", metavar="ID", help="with --wandb: only the runs of this sweep")
    parser.add_argument("--group", help="with --wandb: only the runs of this W&B group")
    parser.add_argument("--tag", help="with --wandb: only the runs with this tag (e.g. an ablation preset)")
    parser.add_argument("--out", type=Path, help="output folder (default: <first RUN_DIR>/analysis)")
    parser.add_argument("--ref", metavar="NAME", help="reference row: its label (e.g. cross) or a factor value "
                        "only it has (default: cross when fusion varies, else the best row; flagged rows passed over)")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument("--curve", metavar="LABEL,...", type=lambda text: [label for label in text.split(",") if label],
                        default=[], help="rows (their labels) joined by a dashed line in the top-1 vs FLOPs and "
                        "params plots, e.g. the single-scale rows of a scales ablation")
    add_check_arguments(parser)
    add_verdict_arguments(parser)
    args = parser.parse_args(argv)
    apply_verdict_settings(parser, args)
    if not args.run_dirs and not args.wandb:
        parser.error("give at least one RUN_DIR (e.g. multirun/make_run) or --wandb ENTITY/PROJECT")
    if not args.wandb and (args.sweep or args.group or args.tag):
        parser.error("--sweep, --group and --tag filter W&B runs: add --wandb ENTITY/PROJECT")
    try:
        args.checks = Checks(args.converge_epochs, args.converge_tol, args.max_seed_std, args.collapse_gap)
    except ValueError as error:
        parser.error(str(error))
    return args


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = DEFAULT_CHECKS
    group = parser.add_argument_group(
        "flags", "a flagged row shows the flag instead of its top-1, is compared with nothing and is never the "
        "best row (docs/analysis.md)")
    group.add_argument("--converge-epochs", type=int, default=defaults.converge_epochs, metavar="K",
                       help="not converged: judge the last K epochs of each run's validation top-1 (default "
                       "%(default)s; runs with fewer epochs are not judged)")
    group.add_argument("--converge-tol", type=float, default=defaults.converge_tol, metavar="POINTS",
                       help="not converged: their least-squares trend moves top-1 by more than POINTS over "
                       "the window, and by more than 2 SEs of the validation set's binomial noise (default "
                       "%(default)s)")
    group.add_argument("--max-seed-std", type=float, default=defaults.max_seed_std, metavar="POINTS",
                       help="seeds disagree, for a row with no other row's seeds and no validation size to judge "
                       "its spread by (an F-test against those otherwise): std over seeds above POINTS (default "
                       "%(default)s)")
    group.add_argument("--collapse-gap", type=float, default=defaults.collapse_gap, metavar="POINTS",
                       help="seeds disagree: a seed more than POINTS below the median of the row's other "
                       "seeds (default %(default)s)")


def collect(args: argparse.Namespace) -> Collection:
    if args.wandb:
        return load_wandb_runs(args.wandb, warn=warn, where=WandbFilter(args.sweep, args.group, args.tag))
    return load_runs(args.run_dirs, warn=warn)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def report_failures(collection: Collection) -> None:
    if collection.failed.empty:
        return
    print(f"\n{len(collection.failed)} run(s) did not complete (not in the table):")
    for _, run in collection.failed.iterrows():
        print(f"  {run['status']}: {run['run_dir']}: {run['reason']}")


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = parse_args(argv)
    try:
        collection = collect(args)
    except NoRunsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if collection.runs.empty:
        report_failures(collection)
        print("error: no completed run with a finite top-1 to tabulate (see the failures and warnings above)",
              file=sys.stderr)
        return 1
    out = args.out or (args.run_dirs[0] / "analysis" if args.run_dirs else Path("analysis_out") /
                       args.wandb.replace("/", "_"))
    factors = varying_factors(collection.runs, collection.candidate_factors)
    try:
        ablation = analyse(collection.runs, factors, ref=args.ref, warn=warn, checks=args.checks, margin=args.margin,
                           design=args.design, ref_reason=args.ref_reason)
    except UnknownReferenceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    unknown_curve = [label for label in args.curve if label not in set(ablation.table["label"])]
    if unknown_curve:
        print(f"error: --curve names no row {', '.join(unknown_curve)}; the rows are: "
              f"{'; '.join(ablation.table['label'])}", file=sys.stderr)
        return 2
    paths = write_tables(ablation, out)
    collection.runs.drop(columns=["history", "swept"]).to_csv(out / "runs.csv", index=False)
    print(f"{len(collection.runs)} completed run(s), grouped by {', '.join(factors)}\n")
    print(markdown_report(ablation))
    report_failures(collection)
    written = [path for path in paths.values()] + [out / "runs.csv"]
    if not args.no_plots:
        written += [path for paths_ in write_plots(collection.runs, ablation, out, curve=args.curve).values()
                    for path in paths_]
    print(f"\nwrote {len(written)} files to {out}: {', '.join(path.name for path in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
