"""What the ablation notebooks' cells call: the paper's table, our models' costs beside it, the ablation table
and plots of a sweep (``sweeps``, ``shipped``), and the two side by side (``side_by_side``), each shown inline
(IPython's display) and returned."""
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd
from IPython.display import Image, Markdown, display

from analysis.present.plots import write_plots
from analysis.present.tables import markdown_report, write_tables
from analysis.runs.local import load_runs
from analysis.stats.ablation import Ablation, analyse
from analysis.stats.flags import DEFAULT_CHECKS, Checks
from analysis.stats.sequential import Design
from analysis.stats.summary import varying_factors

from .ablations import spec
from .rows import PaperRow, measure_rows, measured_markdown
from .side_by_side import branch_table, paper_rows_table, rows_of, side_by_side
from .sweeps import output_root
from .tuned import against_shared, recheck_table, search_table


def show_ablation(sweep_dir: Path, out: Optional[Path] = None, ref: Optional[str] = None,
                  checks: Checks = DEFAULT_CHECKS, ref_reason: Optional[str] = None,
                  curve: Sequence[str] = (), margin: Optional[float] = None,
                  design: Optional[Design] = None) -> Ablation:
    """Collates ``sweep_dir`` like ``python -m analysis.collate``, and shows the table (with its legend,
    seeds-needed, detectable-difference and flag lines) and plots inline; returns the Ablation (``.table``: the
    columns of ablation.csv). Tables and plots are written to ``out`` (default ``<sweep_dir>/analysis``);
    ``curve``: rows joined by a line in the top-1 vs FLOPs and params plots; ``margin`` and ``design``: the
    equivalence margin and sequential design of the verdicts (``analysis.stats.verdict``)."""
    collection = load_runs([sweep_dir], warn=print)
    factors = varying_factors(collection.runs, collection.candidate_factors)
    ablation = analyse(collection.runs, factors, ref=ref, warn=print, checks=checks, ref_reason=ref_reason,
                       margin=margin, design=design)
    out = out or Path(sweep_dir) / "analysis"
    write_tables(ablation, out)
    plots = write_plots(collection.runs, ablation, out, curve=curve)
    display(Markdown(markdown_report(ablation)))
    for name in ("forest", "top1_vs_gflops", "top1_vs_params", "val_curves"):
        display(Image(filename=str(plots[name][0])))
    return ablation


def show_paper_table(name: str) -> pd.DataFrame:
    """The paper's rows of ablation ``name`` (experiments/ablations.yaml) as printed."""
    shown = paper_rows_table(spec(name))
    display(Markdown(shown.to_markdown(index=False, disable_numparse=True)))
    return shown


def show_architecture(name: str) -> pd.DataFrame:
    """Each paper row's model built from the same description (ImageNet size, 1000 classes): params and GMACs
    counted on our model beside the paper's, as ``python -m analysis.paper`` does; then the rows of our ImageNet
    preset that the paper does not print (``imagenet_rows``), counted the same way."""
    ablation = spec(name)
    ours = [PaperRow(table="(ours)", row=label, overrides=overrides)
            for label, overrides in ablation.imagenet_rows.items()]
    comparison = measure_rows(rows_of(ablation) + ours)
    display(Markdown(measured_markdown(comparison)))
    return comparison


def show_shipped_ablation(name: str, sweep_dir: Path) -> Ablation:
    """``show_ablation`` on an ablation's sweep, compared with the row that stands for the paper's reference
    row; tables and plots go to the notebook output folder."""
    ablation = spec(name)
    return show_ablation(sweep_dir, out=output_root() / name, ref=ablation.reference_label,
                         ref_reason=f"it stands for the paper's {ablation.paper_reference}", curve=ablation.curve,
                         margin=ablation.margin, design=ablation.sequential_design)


def show_side_by_side(name: str, result: Ablation) -> pd.DataFrame:
    """Our rows beside the paper rows they stand for (and each branch alone, where the paper prints it)."""
    ablation = spec(name)
    shown = side_by_side(ablation, result)
    display(Markdown(shown.to_markdown(index=False, disable_numparse=True)))
    branches = branch_table(ablation, result)
    if branches is not None:
        display(Markdown("Each branch's head alone (top-1 %):\n\n" +
                         branches.to_markdown(index=False, disable_numparse=True)))
    return shown


def show_search(name: str) -> pd.DataFrame:
    """A tuned ablation's search (``tuned.search_table``) and, where run, its recheck on new seeds."""
    ablation = spec(name)
    table = search_table(ablation)
    display(Markdown(table.to_markdown(index=False, floatfmt=".2f")))
    recheck = recheck_table(ablation)
    if recheck is not None:
        display(Markdown("The top trials of each arm trained again on new seeds, judged on the selection split:\n\n"
                         + recheck.to_markdown(index=False, floatfmt=".2f")))
    return table


def show_against_shared(name: str) -> pd.DataFrame:
    """Each tuned row beside the same fusion at the shared recipe, seed by seed (``tuned.against_shared``)."""
    shown = against_shared(spec(name))
    display(Markdown(shown.to_markdown(index=False, floatfmt=".2f")))
    return shown
