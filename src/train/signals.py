"""Graceful stop: SIGTERM (what SLURM sends before preemption) and SIGINT set a flag; the loop reads it
between steps, saves a checkpoint and exits with status ``interrupted``. A second signal stops at once."""
import logging
import signal
import threading
from typing import Optional

log = logging.getLogger(__name__)


class StopFlag:
    """Installs handlers for SIGTERM/SIGINT (main thread only) and restores the old ones on ``close``."""

    def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
        self.signal_name: Optional[str] = None
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in signals:
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.signal_name is not None:  # the second signal: the user really wants out
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        log.warning("%s received: stopping after this step and saving a checkpoint", self.signal_name)

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def close(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
