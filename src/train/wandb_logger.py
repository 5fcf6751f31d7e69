"""Weights & Biases as a mirror of the run dir: it must never hang nor stop training, and the run dir
(``results.json``, ``metrics.csv``) stays the truth whatever W&B does. Public wandb API only; the one guarantee no
public API gives (a killed offline launch keeps its finished epochs in its ``.wandb`` file) is
``src.train.wandb_files.EpochsOnDisk``'s, which falls back to a warning where a wandb release changes it.

W&B's mode is decided before ``wandb.init``, because an online init without a key waits at a login prompt, and
with a key but no network blocks ~90 s: ``auto`` is online only when ``wandb.login(prompt=False,
verify=False)`` finds a key. A failing online init falls back to offline, a failing offline init to no W&B,
each with a warning. W&B's files live under the run dir (``dir=run_dir``).
"""
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

log = logging.getLogger(__name__)


def api_key_configured() -> bool:
    import wandb

    try:
        return bool(wandb.login(prompt=False, verify=False))
    except Exception:  # noqa: BLE001 - any failure to find a key means "not online"
        return False


def resolve_mode(mode: str) -> str:
    """The mode to start W&B in (``logger.mode``, one of the schema's choices). ``online`` without a key would wait
    at a login prompt on a terminal, so it becomes offline with a warning, like ``auto``."""
    if mode == "auto" and os.environ.get("WANDB_MODE") in ("offline", "disabled", "dryrun"):
        return "disabled" if os.environ["WANDB_MODE"] == "disabled" else "offline"
    if mode in ("offline", "disabled"):
        return mode
    if api_key_configured():
        return "online"
    if mode == "online":
        warnings.warn("W&B online start failed (no API key configured: run `wandb login` or set "
                      "WANDB_API_KEY); logging offline instead, upload later with `wandb sync`", stacklevel=1)
    return "offline"


def shared_service_hint(error: Exception) -> str:
    """Why a resumed run's W&B start says its run ID is in use, where that is the cause: the launch reaches a
    shared wandb-core through WANDB_SERVICE, which still holds the stream of the killed launch it resumes."""
    if "is in use" not in str(error) or not os.environ.get("WANDB_SERVICE"):
        return ""
    return (" (WANDB_SERVICE points this launch at a shared wandb-core that still holds this run from a launch "
            "that was killed: unset WANDB_SERVICE for the resume, or restart that service)")


class WandbLogger:
    """``log_step`` / ``summary`` / ``finish``; every call is a no-op once W&B is off or has failed. An epoch row
    (``epoch`` among the metrics) is committed at once and, where ``EpochsOnDisk`` can follow the file, is in the
    ``.wandb`` file when ``log_step`` returns."""

    def __init__(self, logger_cfg, run_dir: Path, config: Dict[str, Any], group: Optional[str], name: str,
                 run_id: Optional[str] = None, job_type: Optional[str] = None, tags: Optional[list] = None):
        self.run = None
        self.info: Optional[Dict[str, Any]] = None  # mode, run id and folder, for results.json
        self.on_disk = None  # src.train.wandb_files.EpochsOnDisk of this launch, where it can follow the file
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
                from .wandb_files import EpochsOnDisk

                self.on_disk = EpochsOnDisk.follow(self.run)
                return
            except Exception as error:  # noqa: BLE001 - W&B must never stop a training run
                warnings.warn(f"W&B {mode} start failed ({type(error).__name__}: {error}){shared_service_hint(error)}; "
                              f"{'trying offline' if mode == 'online' else 'continuing without W&B'}",
                              stacklevel=1)
        self.mode = "disabled"

    @staticmethod
    def _init(logger_cfg, mode: str, run_dir: Path, config: Dict[str, Any], group: Optional[str], name: str,
              run_id: Optional[str], job_type: Optional[str], tags: list):
        import wandb

        from .wandb_files import flush_settings

        run_dir.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(init_timeout=logger_cfg.init_timeout, console="off", x_disable_stats=True,
                                  silent=True, **flush_settings())
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
            warnings.warn(f"W&B call failed ({type(error).__name__}: {error}); continuing without W&B",
                          stacklevel=1)
            self.run = None

    def log_step(self, metrics: Dict[str, float], step: int) -> None:
        epoch_row = "epoch" in metrics  # committed now: with a step given, W&B holds a row until the next step
        self._safely(lambda: self.run.log(metrics, step=step, commit=True if epoch_row else None))
        if epoch_row:
            self.flush(step)

    def flush(self, step: int) -> None:
        """Waits until the row at ``step`` is in this launch's ``.wandb`` file, so that no kill from now on takes
        it; where the file cannot be followed, warns once and stops waiting for the rest of the launch."""
        if self.run is None or self.on_disk is None:
            return
        if not self.on_disk.wait_for(step):
            self.on_disk = None

    def log_missing(self, rows: Sequence[Tuple[int, Dict[str, Any]]]) -> None:
        """Offline, before this launch logs anything: logs again the rows (``trail_rows`` of ``metrics.csv``, cut
        back to the checkpoint) at steps that no earlier launch's ``.wandb`` file of this run holds, the rows a kill
        took from W&B, so that the launches' files together hold every row the run dir has."""
        if self.run is None or self.mode != "offline" or not rows:
            return
        from .wandb_files import steps_of_earlier_launches

        kept = steps_of_earlier_launches(self.run)
        if kept is None:
            return
        missing = [(step, metrics) for step, metrics in rows if step not in kept]
        for step, metrics in missing:
            self._safely(lambda row, at: self.run.log(row, step=at, commit=True), metrics, step)
        if missing and self.run is not None:
            log.info("W&B: logged again %d row(s) (steps %d-%d) that a killed launch had not written out",
                     len(missing), missing[0][0], missing[-1][0])
            self.flush(missing[-1][0])

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
