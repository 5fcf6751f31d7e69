"""The paper: its transcribed tables and the check of our models against them (``rows``, ``python -m
analysis.paper``), each of its ablations (``ablations``, from experiments/ablations.yaml) beside our CPU proxy
(``side_by_side``), the CPU sweeps that ship with the repo (``shipped``, run by ``sweeps``), and the notebooks:
what their cells call (``notebook``) and how they are written and executed (``build_notebooks``)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: conf/, experiments/, results/, notebooks/
