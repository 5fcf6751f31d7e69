"""``python -m src.sweeps [--check]``: see ``src.sweeps.generate``."""
import sys

from src.sweeps.generate import main

sys.exit(main())
