"""Ablation tables and plots from any set of runs: ``python -m analysis.collate RUN_DIR... [--wandb E/P]``.

loading (results.json or W&B -> one pandas row per run) -> stats (group by what varies, mean/std/n over seeds,
Welch t-test against the best) -> tables (Markdown, LaTeX, CSV) and plots (PNG + SVG); fusion_cost measures
each fusion module alone as the image grows.
"""
from .loading import NoRunsError, load_runs, load_wandb_runs, results_to_row, wandb_run_to_row
from .stats import aggregate, varying_factors
from .tables import paper_table, write_tables

__all__ = ["NoRunsError", "load_runs", "load_wandb_runs", "results_to_row", "wandb_run_to_row", "aggregate",
           "varying_factors", "paper_table", "write_tables"]
