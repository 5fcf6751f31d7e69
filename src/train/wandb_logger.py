"""Weights & Biases, so that it never hangs and never kills training.

The mode is decided before ``wandb.init``, because an online init without a key waits at a login prompt, and
with a key but no network blocks ~90 s: ``auto`` is online only when ``wandb.login(prompt=False,
verify=False)`` finds a key. A failing online init falls back to offline, a failing offline init to no W&B,
each with a warning. W&B's files live under the run dir (``dir=run_dir``).
"""
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Dict, Optional

log = logging.getLogger(__name__)
MODES = ("auto", "online", "offline", "disabled")


def api_key_configured() -> bool:
    import wandb

    try:
        return bool(wandb.login(prompt=False, verify=False))
    except Exception:  # noqa: BLE001 - any failure to find a key means "not online"
        return False


def resolve_mode(mode: str) -> str:
    """The mode to start W&B in. ``online`` without a key would wait at a login prompt on a terminal, so it
    becomes offline with a warning, like ``auto``."""
    if mode not in MODES:
        raise ValueError(f"logger.mode={mode!r}: pick one of {', '.join(MODES)}")
    if mode == "auto" and os.environ.get("WANDB_MODE") in ("offline", "disabled", "dryrun"):
        return "disabled" if os.environ["WANDB_MODE"] == "disabled" else "offline"
    if mode in ("offline", "disabled"):
        return mode
    if api_key_configured():
        return "online"
    if mode == "online":
        warnings.warn("W&B online start failed (no API key configured: run `wandb login` or set "
                      "WANDB_API_KEY); logging offline instead, upload later with `wandb sync`")
    return "offline"


class WandbLogger:
    """``log_step`` / ``summary`` / ``finish``; every call is a no-op once W&B is off or has failed."""

    def __init__(self, logger_cfg, run_dir: Path, config: Dict[str, Any], group: Optional[str], name: str,
                 run_id: Optional[str] = None, job_type: Optional[str] = None, tags: Optional[list] = None):
        self.run = None
        self.info: Optional[Dict[str, Any]] = None  # mode, run id and folder, for results.json
        self.mode = resolve_mode(logger_cfg.mode) if logger_cfg.name == "wandb" else "disabled"
        if self.mode == "disabled":
            return
        attempts = [self.mode] + (["offline"] if self.mode == "online" else [])
        for mode in attempts:
            try:
                self.run = self._init(logger_cfg, mode, Path(run_dir), config, group, name, run_id, job_type,
                                      list(logger_cfg.tags) if tags is None else tags)
                self.mode = mode
                self.info = {"mode": mode, "run_id": self.run.id, "dir": str(Path(self.run.dir).parent)}
                return
            except Exception as error:  # noqa: BLE001 - W&B must never stop a training run
                warnings.warn(f"W&B {mode} start failed ({type(error).__name__}: {error}); "
                              f"{'trying offline' if mode == 'online' else 'continuing without W&B'}")
        self.mode = "disabled"

    @staticmethod
    def _init(logger_cfg, mode: str, run_dir: Path, config: Dict[str, Any], group: Optional[str], name: str,
              run_id: Optional[str], job_type: Optional[str], tags: list):
        import wandb

        run_dir.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(init_timeout=logger_cfg.init_timeout, console="off", x_disable_stats=True,
                                  silent=True)
        return wandb.init(project=logger_cfg.project, entity=logger_cfg.entity, group=group, name=name,
                          config=config, tags=tags, job_type=job_type, dir=str(run_dir), mode=mode,
                          reinit="finish_previous", settings=settings,
                          id=run_id, resume="allow" if run_id else None)  # a resumed run continues its W&B run

    def _safely(self, action, *args, **kwargs) -> None:
        if self.run is None:
            return
        try:
            action(*args, **kwargs)
        except Exception as error:  # noqa: BLE001
            warnings.warn(f"W&B call failed ({type(error).__name__}: {error}); continuing without W&B")
            self.run = None

    def log_step(self, metrics: Dict[str, float], step: int) -> None:
        self._safely(lambda: self.run.log(metrics, step=step))

    @property
    def run_id(self) -> Optional[str]:
        return self.info["run_id"] if self.info else None

    def summary(self, values: Dict[str, Any]) -> None:
        self._safely(lambda: self.run.summary.update(values))

    def mark_preempting(self) -> None:
        """A sweep agent re-queues a run marked preempting instead of counting it as failed."""
        self._safely(lambda: self.run.mark_preempting())

    def finish(self, exit_code: int = 0) -> None:
        self._safely(lambda: self.run.finish(exit_code=exit_code))
        self.run = None


def flatten(config: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
