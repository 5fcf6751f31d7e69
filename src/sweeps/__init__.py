"""The ablation presets as W&B sweeps: the sweep files and experiments/README.md's table, generated from the index
experiments/ablations.yaml (``python -m src.sweeps [--check]``, ``generate``), and the command line of a run a W&B
agent starts (``agent``). Empty on purpose: ``src.run`` imports ``agent`` before ``--help`` answers."""
