"""W&B offline runs uploaded (``python -m src.sync``); their ``.wandb`` files are read by ``src.train.wandb_files``."""
