"""``python -m analysis.report SWEEP_DIR... [--out FILE] [--ref NAME] [--title TEXT]``: one self-contained HTML
page per set of sweeps, to attach to a paper's appendix or a lab chat: first each row's difference to the
reference with its verdict (the forest plot), then the ablation table (as ``collate`` prints it, with its legend,
verdict and flag lines; ``--ablation``, ``--margin`` and the design options as in ``collate``), the plots inlined
as PNG, what varied across the runs and what was
held fixed (a diff of their resolved configs), provenance (code versions, devices, thread counts, library
versions) and the runs that failed, were skipped or were found twice. Default output:
``<first SWEEP_DIR>/report.html``. Malformed results.json files and runs without a finite top-1 are left out
with a warning each, as in ``collate``. Exits 1 when there is no completed run, 2 when the runs vary in nothing
but the seed (no ablation to tabulate) or ``--ref`` names no row; nothing is written then."""
import argparse
import sys
from pathlib import Path
from typing import List, Optional

from analysis.paper.options import add_verdict_arguments, apply_verdict_settings
from analysis.present.html import NoFactorError, render
from analysis.runs.records import NoRunsError
from analysis.stats.reference import UnknownReferenceError


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dirs", nargs="+", type=Path, help="Hydra multirun (or run) dirs, searched recursively")
    parser.add_argument("--out", type=Path, help="the HTML file (default: <first SWEEP_DIR>/report.html)")
    parser.add_argument("--ref", metavar="NAME", help="reference row, as in python -m analysis.collate")
    parser.add_argument("--title", help="the page's title (default: the sweep folders' names)")
    add_verdict_arguments(parser)
    args = parser.parse_args(argv)
    apply_verdict_settings(parser, args)
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)

    def warn(message: str) -> None:
        print(f"warning: {message}", file=sys.stderr)

    try:
        page = render(args.sweep_dirs, ref=args.ref, title=args.title, warn=warn, margin=args.margin,
                      design=args.design)
    except NoRunsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (NoFactorError, UnknownReferenceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = args.out or args.sweep_dirs[0] / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    print(f"wrote {out} ({len(page.encode()) / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
