"""``results.json``'s ``provenance``: what produced the numbers. On the CPU the thread count changes them (same
config and seed, different top-1), so it is recorded with the device, the code version and the libraries."""
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import torch

ROOT = Path(__file__).resolve().parents[2]
KEYS = ("git_sha", "git_dirty", "torch", "timm", "python", "device", "threads", "peak_memory_mb")


def git(*args: str) -> Optional[str]:
    """``git ARGS`` in the repo, or None (no git, not a checkout, or slow: never hold up a run)."""
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:  # Linux names the CPU model here; platform.processor() is often just the architecture
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated by torch on CUDA; on the CPU the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def provenance(device: torch.device) -> Dict[str, Any]:
    import timm

    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_sha": sha.strip() if sha else None, "git_dirty": bool(status.strip()) if status is not None else None,
            "torch": torch.__version__, "timm": timm.__version__, "python": platform.python_version(),
            "device": device_name(device), "threads": torch.get_num_threads(),
            "peak_memory_mb": round(peak_memory_mb(device), 1)}
