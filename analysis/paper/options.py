"""The command-line options every command that gives verdicts shares (``collate``, ``report``, ``sequential``):
the equivalence margin and the sequential design, taken from an ablation's entry in experiments/ablations.yaml
(``--ablation``) or given one by one."""
import argparse
from typing import Optional, Tuple

from analysis.stats.sequential import SPENDING, Design, DesignError

from .ablations import spec


def add_verdict_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "verdicts", "each row against the reference is better, worse, equivalent within --margin, or inconclusive "
        "(analysis/stats/verdict.py); seeds added after a look need the design they were added under "
        "(analysis/stats/sequential.py)")
    group.add_argument("--ablation", metavar="NAME", help="take --margin, the design and the reference row (--ref) "
                       "from this entry of experiments/ablations.yaml (e.g. fusion); the options override it")
    group.add_argument("--margin", type=float, metavar="POINTS",
                       help="equivalence margin in top-1 points (default: none, so no row can be equivalent)")
    group.add_argument("--max-seeds", type=int, metavar="N", help="the design's most seeds a row (default: the "
                       "seeds run, one look)")
    group.add_argument("--looks", type=int, nargs="+", metavar="N", help="seed counts of the looks already taken")
    group.add_argument("--spending", choices=sorted(SPENDING), help="alpha spending function (default pocock)")
    group.add_argument("--block", type=int, metavar="N", help="seeds a look adds after the declared ones (default 2)")


def verdict_settings(args: argparse.Namespace) -> Tuple[Optional[float], Optional[Design]]:
    """(margin, design) from --ablation and the options; a design only where one is declared or asked for."""
    margin, declared = None, {}
    if args.ablation:
        entry = spec(args.ablation)
        margin, declared = entry.margin, dict(entry.design)
    if args.margin is not None:
        if not args.margin > 0:
            raise DesignError(f"--margin {args.margin}: give a positive number of top-1 points, e.g. 0.5")
        margin = args.margin
    for key, value in (("max_seeds", args.max_seeds), ("looks", args.looks), ("spending", args.spending),
                       ("block", args.block)):
        if value is not None:
            declared[key] = value
    if not declared:
        return margin, None
    if "max_seeds" not in declared:
        raise DesignError("--looks/--spending/--block need --max-seeds N: the most seeds a row may get, fixed "
                          "before the first look")
    declared["looks"] = tuple(declared.get("looks", ()))
    return margin, Design(**declared)


def apply_verdict_settings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Sets ``args.margin`` and ``args.design`` and, where ``--ablation`` is given and ``--ref`` is not, ``args.ref``
    and ``args.ref_reason`` (the ablation's reference row); a setting that cannot be run is the parser's error."""
    try:
        args.margin, args.design = verdict_settings(args)
    except (DesignError, KeyError) as error:
        parser.error(str(error).strip("'\""))
    args.ref_reason = None
    if args.ablation and not getattr(args, "ref", None):
        entry = spec(args.ablation)
        args.ref, args.ref_reason = entry.reference_label, f"it stands for the paper's {entry.paper_reference}"
