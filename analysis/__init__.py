"""Ablation tables and plots from any set of runs: ``python -m analysis.collate RUN_DIR... [--wandb E/P]``.

loading (results.json or W&B -> one pandas row per run, each (config, seed) once: dedupe) -> stats (group by
what varies, mean/std/n over seeds) and flags (rows not converged, or whose seeds disagree: not shown as
results, not compared) -> ablation (each row against a reference: paired t over seeds, Welch, or McNemar
over images for single runs (compare, predictions, reference), Holm-adjusted; seeds needed: power) -> tables
(Markdown, LaTeX, CSV) and plots (PNG + SVG); fusion_cost measures each fusion module alone as the image
grows. report writes all of it for a set of sweeps as one HTML page (with a config diff and provenance);
shipped, paper_vs_proxy and build_notebooks are the paper-ablation notebooks and their shipped results.
"""
from .ablation import Ablation, analyse
from .flags import Checks
from .loading import NoRunsError, load_runs, load_wandb_runs, results_to_row, wandb_run_to_row
from .reference import UnknownReferenceError
from .stats import summarize_groups, varying_factors
from .tables import paper_table, write_tables

__all__ = ["Ablation", "Checks", "NoRunsError", "UnknownReferenceError", "analyse", "load_runs", "load_wandb_runs",
           "results_to_row", "wandb_run_to_row", "summarize_groups", "varying_factors", "paper_table",
           "write_tables"]
