"""``python -m analysis.paper.build_notebooks [--rerun] [NAME...]``: writes notebooks/<name>_ablation.ipynb for each
ablation of ``experiments/ablations.yaml`` (all by default) and executes it (nbclient, a real kernel), storing the
outputs, so that GitHub shows the tables and plots. The notebooks load the shipped results (results/cpu/);
``--rerun`` first runs each ablation's sweep again and replaces those files (minutes per ablation).

Every notebook has the same five parts: the paper's table, the paper's costs beside our models', our accuracy
on the CPU proxy (the ablation table and plots), the two side by side, and a reading: the ablation's ``reading``
and the proxy's limits, templates rendered from the shipped results' table when the notebook is written
(``readings``; after ``--rerun``, from the new results)."""
import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from src.train.record_io import RESULTS_FILE

from . import ROOT
from .ablations import AblationSpec, specs
from .readings import Collated, collate_shipped, render_limits, render_reading
from .shipped import results_dir

NOTEBOOKS = ROOT / "notebooks"
KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}
SETUP = '''import sys
from pathlib import Path

ROOT = Path.cwd() if (Path.cwd() / "src").is_dir() else Path.cwd().parent  # run from notebooks/ or the repo
sys.path.insert(0, str(ROOT))

from analysis.paper.notebook import show_architecture, show_paper_table, show_shipped_ablation, show_side_by_side
from analysis.paper.shipped import sweep_for

ABLATION = "{name}"
RERUN = False  # True: run the sweep again (about {minutes:g} minutes on 2 cores) and replace the shipped results
sweep_dir = sweep_for(ABLATION, rerun=RERUN)  # or the folder of any sweep of +experiment={preset}'''


# nbclient's "Executing notebook with kernel" goes to the root logger, whose handler may be a stream already closed
# (a test's captured stderr): a cell's error raises, so the line is dropped.
QUIET = logging.getLogger("analysis.paper.kernels")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False


def seed_count(ablation: AblationSpec) -> int:
    """How many seeds the shipped results of ``ablation`` have (the preset's ``seed=`` grid)."""
    folder = results_dir(ablation.name)
    return len({json.loads(path.read_text())["seed"] for path in folder.glob(f"*/{RESULTS_FILE}")})


def paper_source(ablation: AblationSpec) -> str:
    table = f"Table {ablation.paper_table}" if ablation.paper_table[0].isdigit() else ablation.paper_table
    return f"CrossViT (Chen, Fan, Panda, ICCV 2021; arXiv 2103.14899 v2), {table}"


def reading(ablation: AblationSpec, shipped: Optional[Collated] = None) -> str:
    """Section 5: the ablation's reading and the proxy's limits, rendered from its shipped results (``readings``)."""
    shipped = shipped or collate_shipped(ablation)
    return (f"## 5. Reading\n\n{render_reading(ablation, shipped.result, shipped.runs)}\n\n"
            f"{render_limits(ablation, shipped.result, shipped.runs)}")


def cells(ablation: AblationSpec) -> List:
    rerun = f"python -m analysis.paper.build_notebooks --rerun {ablation.name}"
    return [
        new_markdown_cell(
            f"# {ablation.title}: the paper's ablation and its CPU proxy\n\n"
            f"**Question.** {ablation.question}\n\n**Proxy.** {ablation.proxy}\n\n"
            f"**Results.** The numbers below come from `results/cpu/{ablation.name}/`, shipped with the repo: the "
            f"sweep `python -m src.run -m +experiment={ablation.preset} hydra/launcher=parallel train.threads=1` "
            f"({seed_count(ablation)} seeds on the CPU proxy, `conf/experiment/cpu/proxy.yaml`, W&B offline; about "
            f"{ablation.minutes:g} minutes on 2 "
            f"cores). `RERUN = True` runs it again and replaces those files; `{rerun}` does that and stores this "
            f"notebook's outputs. Set `sweep_dir` to read another sweep of the same preset."),
        new_code_cell(SETUP.format(name=ablation.name, minutes=ablation.minutes, preset=ablation.preset)),
        new_markdown_cell(
            f"## 1. The paper's table\n\n{paper_source(ablation)}: ImageNet-1k top-1, params and FLOPs as "
            f"printed (transcribed in `analysis/paper/crossvit_paper.yaml`). Δ is each row's top-1 minus "
            f"{ablation.paper_reference}'s."),
        new_code_cell("show_paper_table(ABLATION);"),
        new_markdown_cell(
            "## 2. The paper's costs beside our models'\n\nEach paper row's model, built by this harness from the "
            "same description (ImageNet size, 1000 classes) and counted: params, and FLOPs as multiply-accumulates "
            "(GMACs, attention included; `python -m analysis.paper` checks every row). This shows that our version "
            "of the ablation changes the architecture the way the paper's did; the proxy's own, much smaller "
            "costs are in the next table." + (
                " Below the paper's rows, the rows of our ImageNet preset "
                f"(`+experiment={ablation.imagenet_preset}`) that the paper does not print, counted the same way."
                if ablation.imagenet_rows else "")),
        new_code_cell("show_architecture(ABLATION);"),
        new_markdown_cell(
            "## 3. Our accuracy on the CPU proxy\n\nTop-1 on the 10,080 fixed validation renders after the last "
            f"epoch, mean ± std over seeds, with its 95% interval. Every row is compared with "
            f"`{ablation.reference_label}` (our {ablation.paper_reference}) seed by seed: the difference Δ with "
            "its 95% interval, the paired t-test's p-value Holm-adjusted over the rows, and the row's verdict: "
            f"better, worse, equivalent within ±{ablation.margin or 0:g} point (two one-sided tests) or "
            "inconclusive" + (" under the sequential design its seeds were added by (the line under the table says "
                              "which)" if ablation.design else "") + ". The "
            "lines under the table name the test, estimate how many seeds would resolve the smallest gap and give "
            "the smallest difference each row's seeds could detect; a row still improving at the end (beyond the "
            "validation set's noise), or whose seeds disagree, shows a flag instead of its number. Then "
            "top-1 against FLOPs and against params (95% intervals as error bars) and the validation curves." + (
                f" In both, a dashed line joins {', '.join(f'`{label}`' for label in ablation.curve)}: a row above "
                "that curve does better than it at the same cost." if ablation.curve else "")),
        new_code_cell("result = show_shipped_ablation(ABLATION, sweep_dir)"),
        new_markdown_cell(
            "## 4. The paper and the proxy, row by row\n\nEach of our rows beside the paper row it stands for: "
            "both differences to the reference row, the FLOPs and params of each row relative to its reference "
            "(paper / ours), and the row's verdict and, where it is better or worse, whether that goes the paper's "
            "way."),
        new_code_cell("show_side_by_side(ABLATION, result);"),
        *(tuning_cells(ablation) if ablation.tuning else []),
        new_markdown_cell(reading_or_note(ablation)),
    ]


def tuning_cells(ablation: AblationSpec) -> List:
    """An ablation of tuned rows: the search, and each row beside its fusion at the shared recipe."""
    return [
        new_markdown_cell(
            "## 4a. The search\n\nEach arm's own Optuna study (`python -m src.tune`, the space "
            f"`conf/tune/{Path(ablation.tuning).name}.yaml`): its trials are ordinary runs that hold a fifth of the "
            "training digits out as the selection split and are judged, and pruned, on its top-1 only; the shared "
            "recipe is each study's trial 0. The table gives each arm's best recipe, its selection top-1 (one "
            "seed), the shared recipe's, the trials and what the search cost beside an exhaustive grid over the "
            "space's grid values. The shipped summaries are in "
            f"`results/cpu/{ablation.tuning}/`. Then the top trials trained again on new seeds (`python -m "
            "src.tune recheck`): how much of the best recipe's lead was the luck of one seed."),
        new_code_cell("from analysis.paper.notebook import show_against_shared, show_search\n\n"
                      "show_search(ABLATION);"),
        new_markdown_cell(
            "## 4b. Tuned beside the shared recipe\n\nThe table above (section 3) trains each fusion's best "
            "recipe on all the training digits, as the shared-recipe ablation "
            f"(`results/cpu/{ablation.shared}/`) trained every fusion at one recipe, on the same seeds: each row "
            "beside its fusion there, on the seeds both have, and its rank among these rows in each table on those "
            "seeds. Where the search chose another recipe: the paired difference with its 95% interval. Where it "
            "kept the shared recipe the pairs are the same jobs (`same jobs`: the same config but how it was run), "
            "so their difference is not tuning's and is not tested: `identical seeds` counts the seeds that came "
            "out bit for bit the same, and `max |Δ|` says how far the others, run on another torch or CPU, moved."
            + (" The paper's form of a fusion is set beside the shared-recipe ablation's modified form where "
               "that is the row it ran: " + ", ".join(f"`{ours}` beside `{theirs}`" for ours, theirs in
                                                        ablation.shared_rows.items()) + "."
               if ablation.shared_rows else "")),
        new_code_cell("show_against_shared(ABLATION);"),
    ]


def reading_or_note(ablation: AblationSpec) -> str:
    """The reading where the shipped results are there to render it from; else (a test's empty results folder,
    before a --rerun has written them) a note, replaced by ``main`` once the kernel has run."""
    if not results_dir(ablation.name).is_dir():
        return (f"## 5. Reading\n\n(rendered from `results/cpu/{ablation.name}/` by `python -m "
                f"analysis.paper.build_notebooks {ablation.name}`: no results there yet)")
    return reading(ablation)


def build(ablation: AblationSpec):
    notebook = new_notebook(cells=cells(ablation))
    for index, cell in enumerate(notebook.cells):
        cell.id = f"{ablation.name}-{index}"  # stable ids: a rebuild changes only what changed
    notebook.metadata.update({"kernelspec": KERNEL, "language_info": {"name": "python"}})
    return notebook


def execute_all(notebooks: List, cores: int = 2, timeout: int = 1200) -> List:
    """Runs every cell of each notebook in notebooks/ (nbclient raises on a cell's error), ``cores`` kernels at
    a time (a kernel spends much of its time on its own imports), and returns the notebooks."""
    from nbclient import NotebookClient  # a test extra: writing a notebook without executing it needs none

    slots = asyncio.Semaphore(cores)

    async def one(notebook):
        async with slots:
            await NotebookClient(notebook, timeout=timeout, kernel_name="python3", record_timing=False, log=QUIET,
                                 resources={"metadata": {"path": str(NOTEBOOKS)}}).async_execute()
        notebook.metadata["language_info"] = {"name": "python"}  # no interpreter version: stable across machines

    async def every():
        await asyncio.gather(*(one(notebook) for notebook in notebooks))

    asyncio.run(every())
    return notebooks


def path_of(ablation: AblationSpec) -> Path:
    return NOTEBOOKS / f"{ablation.notebook}.ipynb"


def main(argv: Optional[List[str]] = None) -> int:
    known = specs()
    parser = argparse.ArgumentParser(prog="python -m analysis.paper.build_notebooks",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"ablations (default: all of {', '.join(known)})")
    parser.add_argument("--rerun", action="store_true", help="run each ablation's sweep again first (minutes each)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in known]
    if unknown:
        parser.error(f"no ablation {', '.join(unknown)}: pick from {', '.join(known)}")
    if args.rerun:
        os.environ["FUSIONVIT_RERUN"] = "1"  # the kernels inherit it (analysis.paper.shipped.rerun_setting)
    ablations = [known[name] for name in args.names or known]
    print(f"executing {', '.join(ablation.notebook for ablation in ablations)}", flush=True)
    for ablation, notebook in zip(ablations, execute_all([build(ablation) for ablation in ablations])):
        notebook.cells[-1].source = reading(ablation)  # after --rerun, from the results the kernel just wrote
        nbformat.write(notebook, path_of(ablation))
    return 0


if __name__ == "__main__":
    sys.exit(main())
