"""``python -m analysis.paper``: every CrossViT row of the paper next to our model (see ``rows``)."""
import sys

from .rows import main

sys.exit(main())
