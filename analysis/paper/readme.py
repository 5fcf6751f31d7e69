"""``python -m analysis.paper.readme [--check]``: writes the README's results block, between
``<!-- results:fusion:start -->`` and ``<!-- results:fusion:end -->``, from the shipped fusion ablation
(results/cpu/fusion): the table and the lines under it as ``python -m analysis.collate results/cpu/fusion --ablation
fusion`` prints them, its warnings, and a reading rendered from that table (``READING``, placeholders as in
``readings``), with the forest plot first and the curves last (written to docs/img/fusion_*.png with the
block). ``--check`` writes nothing and exits 1 when the README's block differs from what the results give.
The rest of the README is left alone."""
import argparse
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import List, Optional

from analysis.present.plots import write_plots
from analysis.present.tables import markdown_report

from . import ROOT
from .ablations import spec
from .readings import collate_shipped, render

README = ROOT / "README.md"
WIDTH = 120
ABLATION = "fusion"
START, END = f"<!-- results:{ABLATION}:start -->", f"<!-- results:{ABLATION}:end -->"
COMMAND = f"python -m analysis.collate results/cpu/{ABLATION} --ablation {ABLATION}"
NOTICE = f"<!-- python -m analysis.paper.readme writes this block from results/cpu/{ABLATION}: edit READING there -->"
HEADER = (f"The shipped fusion ablation (`results/cpu/{ABLATION}/`, {{seeds}} seeds a row, "
          f"[notebooks/{ABLATION}_ablation.ipynb](notebooks/{ABLATION}_ablation.ipynb)), as `{COMMAND}` prints it:")
READING = (
    "How to read it: at {seeds} seeds a row, the fusions from the highest top-1 down are {order}; cross-attention, "
    "the paper's best, is {rank:cross}. Against it, {verdicts}. Beside the paper's gaps (single ImageNet runs), "
    "{reach}. Against no fusion (`--ref none`), {verdicts:@none} (only an `equivalent` verdict would say that a "
    "fusion buys nothing over two unfused branches). The costs are exact: all-attention costs "
    "{flops:all_attn_residual} cross's FLOPs; cross-attention costs {params:cross@none} no fusion's parameters and "
    "{flops:cross@none} its FLOPs; without fusion the S-branch head alone reaches {s_head:none} (the L-branch's "
    "{l_head:none}). Provenance: {pooled}.")


# The figures the block shows, written beside the README (docs/img/fusion_<plot>.png) with the block.
FIGURES = {"forest": "each fusion's difference to cross over the seed pairs, with its verdict",
           "val_curves": "validation top-1 per epoch, mean over seeds with its 95% interval"}
IMAGES = ROOT / "docs" / "img"


def shipped_result():
    ablation = spec(ABLATION)
    shipped = collate_shipped(ablation)  # as its notebook collates it: one table for README and notebook
    return ablation, shipped.runs, shipped.result, shipped.warnings


def figure_line(name: str) -> str:
    return f"![{FIGURES[name]}](docs/img/{ABLATION}_{name}.png)"


def block() -> str:
    """The block, markers included, from the shipped results: the forest plot first."""
    ablation, runs, result, warnings = shipped_result()
    warned = [wrapped(f"- {warning}", indent="  ") for warning in warnings]
    paragraphs = [render(HEADER, ablation, result, runs), figure_line("forest"), *markdown_report(result).split("\n\n"),
                  *(["collate warns:", "\n".join(warned)] if warned else []),
                  render(READING, ablation, result, runs), figure_line("val_curves")]
    return "\n".join([START, NOTICE, "\n\n".join(wrapped(paragraph) for paragraph in paragraphs), END])


def write_figures() -> List[Path]:
    """docs/img/fusion_forest.png and fusion_val_curves.png, drawn as collate draws them."""
    _, runs, result, _ = shipped_result()
    written = []
    with tempfile.TemporaryDirectory() as folder:
        plots = write_plots(runs, result, Path(folder))
        for name in FIGURES:
            target = IMAGES / f"{ABLATION}_{name}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(plots[name][0], target)
            written.append(target)
    return written


def wrapped(paragraph: str, indent: str = "") -> str:
    """Prose at the README's width; a table (or a list already wrapped) is left as it is."""
    if paragraph.startswith("|") or "\n" in paragraph:
        return paragraph
    return textwrap.fill(paragraph, WIDTH, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


def replaced(text: str, new_block: str) -> str:
    """``text`` with its block replaced by ``new_block``; ValueError when the markers are not there once each."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"{README.name} must hold {START} and then {END} once each, around the results block")
    return text[:text.index(START)] + new_block + text[text.index(END) + len(END):]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.paper.readme", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the README's block is stale; write nothing")
    parser.add_argument("--readme", type=Path, default=README, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    try:
        updated = replaced(text, block())
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.check:
        if updated != text:
            print(f"{args.readme.name}'s results block differs from results/cpu/{ABLATION}: run python -m "
                  f"analysis.paper.readme", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(updated)
    figures = write_figures()
    print(f"wrote the results block of {args.readme.name} and {', '.join(path.name for path in figures)} from "
          f"results/cpu/{ABLATION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
