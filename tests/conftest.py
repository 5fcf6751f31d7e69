"""What every test shares: the repo's paths, the harness's command lines run in a real subprocess, and the real
config tree composed with Hydra's compose API. Test files import these (``from conftest import ROOT``)."""
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import pytest
import torch
from hydra import compose, initialize_config_dir

from src.config import register_configs

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
register_configs()

# Tests are sized for 2 CPU cores; more threads only add contention between pytest and subprocesses. Under
# pytest-xdist (make test runs one worker per core) each worker takes one thread.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def opened_gates(model: torch.nn.Module, alpha: float = 0.5) -> torch.nn.Module:
    """A closed gate (``gated_cross`` at init) passes nothing by design, which would hide the fusion from the
    tests of its wiring: they open it."""
    from src.models.fusion.gated_cross import TanhGate

    for module in model.modules():
        if isinstance(module, TanhGate):
            torch.nn.init.constant_(module.alpha, alpha)
    return model


def cls_after_first_fusion(model: torch.nn.Module, images: torch.Tensor, branch: int,
                           perturb_branch: Optional[int] = None) -> torch.Tensor:
    """Branch ``branch``'s CLS token after the first encoder, optionally with noise added to branch
    ``perturb_branch``'s patch embedding: what a fusion step lets one branch see of another."""
    captured = {}
    hooks = [model.encoders[0].register_forward_hook(lambda m, i, out: captured.setdefault("out", out))]
    if perturb_branch is not None:
        noise = torch.Generator().manual_seed(1)
        hooks.append(model.patch_embed[perturb_branch].register_forward_hook(
            lambda m, i, out: out + torch.randn(out.shape, generator=noise)))
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    return captured["out"][branch][:, 0]


def cli_env(**extra: str) -> dict:
    """The environment of a subprocess run: W&B quiet, Hydra's short errors (what a user sees). Without
    WANDB_SERVICE: wandb puts its service's address there once this process has started W&B (an in-process test),
    and a subprocess with it would share that service, where a SIGKILLed launch's run ID stays "in use" and its
    resume's W&B start fails; a user's launch starts its own."""
    env = {key: value for key, value in os.environ.items() if key != "WANDB_SERVICE"}
    return dict(env, WANDB_SILENT="true", HYDRA_FULL_ERROR="0", **extra)


def command(module: str, *args: str) -> list:
    return [sys.executable, "-m", module, *args]


def run_module(module: str, *args: str, merge_stderr: bool = False, timeout: float = 300,
               **env: str) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` from the repo root; ``merge_stderr`` puts stderr into ``stdout``."""
    return subprocess.run(command(module, *args), cwd=ROOT, env=cli_env(**env), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE, text=True, timeout=timeout)


# How long a test waits for an event (a checkpoint, an epoch, a requeued job's end) before it calls the process hung:
# a limit for a hang, not a measure of speed, so a loaded 2-core machine never reaches it. Tests wait on the event.
PATIENCE_S = 1800.0


def wait_for(event: Callable[[], bool], what: str, process: Optional[subprocess.Popen] = None,
             poll_s: float = 0.05) -> None:
    """Returns as soon as ``event()`` holds. Fails at once when ``process`` ends first (with its output), and only
    after ``PATIENCE_S`` of nothing happening (a hang), saying so."""
    started = time.monotonic()
    while not event():
        if process is not None and process.poll() is not None:
            output = process.communicate()[0] or ""
            pytest.fail(f"{what}: the process ended (rc {process.returncode}) first:\n{output[-3000:]}")
        if time.monotonic() - started > PATIENCE_S:
            if process is not None:
                process.kill()
            output = (process.communicate()[0] or "") if process is not None else ""
            pytest.fail(f"{what}: not after PATIENCE_S={PATIENCE_S:.0f} s, the limit for a hung process:\n"
                        f"{output[-3000:]}")
        time.sleep(poll_s)


def compose_config(overrides=(), hydra: bool = False):
    """``conf/config.yaml`` with ``overrides``; ``hydra`` adds the ``hydra`` node (sweeper params, run dirs)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)
