"""What produced a run's numbers (the record's ``provenance``): the commit, the library versions, the device and
the thread count. torch and timm load only when ``provenance`` is called."""
import platform
import subprocess
from pathlib import Path
from typing import Optional

from .record import Provenance

ROOT = Path(__file__).resolve().parents[2]


def git(*args: str) -> Optional[str]:
    """``git ARGS`` in the repo, or None (no git, not a checkout, or slow: never hold up a run)."""
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def cpu_name() -> str:
    try:  # Linux names the CPU model here; platform.processor() is often just the architecture
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_device_name() -> str:
    """The CPU model and the instruction set torch dispatches its kernels to: the model name alone does not tell two
    generations apart ("AMD EPYC"), and AVX2 and AVX-512 kernels give other floating-point sums, other numbers."""
    import torch

    return f"{cpu_name()} ({torch.backends.cpu.get_cpu_capability()})"


def provenance(device) -> Provenance:
    """``device``: a ``torch.device``."""
    # torch and timm load here, not at import: src.run answers --help and config errors without them
    import timm
    import torch

    from .process import peak_memory_mb

    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_sha": sha.strip() if sha else None, "git_dirty": bool(status.strip()) if status is not None else None,
            "torch": torch.__version__, "timm": timm.__version__, "python": platform.python_version(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_device_name(),
            "threads": torch.get_num_threads(), "peak_memory_mb": round(peak_memory_mb(device), 1)}
