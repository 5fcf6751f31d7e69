"""From runs to ablation tables, plots and the paper's checks. Four layers, each importing only those above it:

- ``runs``: runs as pandas rows, from ``results.json`` files (``runs.local``) or the W&B API
  (``runs.wandb_api``), each (config, seed) once (``runs.dedupe``); per-image predictions.
- ``stats``: the summary over seeds, the tests against a reference row, flags, seeds needed, the ablation table.
- ``present``: number formatting, the table as Markdown / LaTeX / CSV, plots, config diff, the HTML page.
- ``paper``: the paper's transcribed tables and the check of our models against them (``python -m
  analysis.paper``), each paper ablation beside its CPU proxy, the shipped results and the notebooks.

Command lines on top: ``python -m analysis.collate`` (the table of any set of runs) and ``python -m
analysis.report`` (one HTML page). See docs/analysis.md.
"""
