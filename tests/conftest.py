import os

import pytest
import torch

# Tests are sized for 2 CPU cores; more threads only add contention between pytest and subprocesses.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
