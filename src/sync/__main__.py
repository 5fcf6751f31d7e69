"""``python -m src.sync DIR... [--dry-run] [-- WANDB_SYNC_OPTIONS]`` (see ``src.sync.upload``)."""
import sys

from src.sync.upload import main

if __name__ == "__main__":
    sys.exit(main())
