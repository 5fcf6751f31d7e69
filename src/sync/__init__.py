"""W&B offline runs: read back from their ``.wandb`` files (``offline_runs``) and uploaded (``python -m src.sync``)."""
