"""``python -m analysis.verdicts RUN_DIR... --vs RUN_DIR... [--names A B]``: do two sets of runs of the same
grid get the same flag verdicts?

The flags (``analysis/stats/flags.py``) must not flip under a floating-point perturbation: another thread count
(``make run ARGS="train.threads=2 hydra.launcher.n_jobs=1"``) or another CPU moves every run's top-1 the way
another seed does, and a verdict that depends on that is noise. For each row of each set this prints the verdict
(a result, or the kinds of flag), the run with the largest |rise| over the last epochs against the tol and that
run's validation-noise SE, and the seeds-disagree F-test's p against its threshold, then whether the verdicts
agree. Exit 0 when every row agrees, 1 when one differs, 2 when the sets do not hold the same rows.
"""
import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import pandas as pd

from analysis.collate import add_check_arguments, warn
from analysis.runs.local import load_runs
from analysis.runs.records import NoRunsError
from analysis.stats.ablation import analyse
from analysis.stats.flags import DISAGREE_P, Checks, flag_kinds
from analysis.stats.summary import varying_factors


@dataclass
class RowVerdict:
    verdict: str  # "result" or the kinds of flag
    largest_rise: float  # signed, the run with the largest |rise| over the last epochs
    rise_se: float  # that run's validation-noise SE of the rise
    spread_p: float  # the seeds-disagree F-test's p (NaN: not testable)


def row_verdicts(run_dirs: List[Path], checks: Checks) -> Dict[str, RowVerdict]:
    """Each row's verdict, by its label in the ablation table: read from the table collate writes, so the two
    cannot judge a row differently."""
    collection = load_runs(run_dirs, warn=warn)
    runs = collection.runs
    factors = varying_factors(runs, collection.candidate_factors)
    table = analyse(runs, factors, warn=warn, checks=checks).table
    return {row.label: RowVerdict(verdict=flag_kinds(row.flag) or "result", largest_rise=row.last_epochs_rise,
                                  rise_se=row.last_epochs_rise_se, spread_p=row.spread_p)
            for row in table.itertuples(index=False)}


def comparison_table(first: Dict[str, RowVerdict], second: Dict[str, RowVerdict], names: List[str]) -> pd.DataFrame:
    rows = []
    for label in first:
        row = {"row": label}
        for name, verdicts in zip(names, (first, second)):
            verdict = verdicts[label]
            row[f"{name}: verdict"] = verdict.verdict
            row[f"{name}: largest rise (SE)"] = f"{verdict.largest_rise:+.2f} ({verdict.rise_se:.2f})"
            row[f"{name}: spread p"] = f"{verdict.spread_p:.3f}"
        row["same verdict"] = "yes" if first[label].verdict == second[label].verdict else "NO"
        rows.append(row)
    return pd.DataFrame(rows)


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m analysis.verdicts", description=__doc__.splitlines()[0])
    parser.add_argument("first", nargs="+", type=Path, help="the first set's run or multirun dirs")
    parser.add_argument("--vs", nargs="+", type=Path, required=True, metavar="RUN_DIR",
                        help="the second set's run or multirun dirs")
    parser.add_argument("--names", nargs=2, default=["first", "second"], metavar=("A", "B"),
                        help="the two sets' names in the table (e.g. '1 thread' '2 threads')")
    add_check_arguments(parser)
    args = parser.parse_args(argv)
    try:
        args.checks = Checks(args.converge_epochs, args.converge_tol, args.max_seed_std, args.collapse_gap)
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = parse_args(argv)
    try:
        first, second = row_verdicts(args.first, args.checks), row_verdicts(args.vs, args.checks)
    except NoRunsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if set(first) != set(second):
        print(f"error: the two sets hold different rows ({', '.join(first)} vs {', '.join(second)}): give runs "
              f"of the same grid to both", file=sys.stderr)
        return 2
    table = comparison_table(first, second, args.names)
    print(table.to_markdown(index=False))
    print(f"\nrise: the least-squares trend of a run's last {args.checks.converge_epochs} validation top-1 values "
          f"(the run of the row with the largest |rise|; flagged above {args.checks.converge_tol:g} points and 2 SE); "
          f"spread p: the seeds-disagree F-test (flagged below {DISAGREE_P:g}; nan: not testable).")
    differ = table["same verdict"].eq("NO")
    if differ.any():
        print(f"\nverdicts differ on {', '.join(table.loc[differ, 'row'])}")
        return 1
    print(f"\nsame verdicts on all {len(table)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
