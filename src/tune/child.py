"""``python -m src.tune.child ARGS``: a trial's process, ``python -m src.run ARGS`` in place of this one, told by the
kernel to get SIGTERM when its worker dies (Linux's parent-death signal, which survives the exec). A worker killed
with kill -9 thus leaves no orphan training on: its run saves a checkpoint and records ``interrupted``, and the
retried trial resumes it. The trial runs in a session of its own, so that the pruner's SIGTERM reaches it and its
loader processes, not the worker. Elsewhere than Linux the run is started the same way, without the signal.
"""
import ctypes
import os
import signal
import sys

WORKER_ENV = "FUSIONVIT_TUNE_WORKER"  # the worker's pid, which started this process
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def main() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != int(os.environ.get(WORKER_ENV, os.getppid())):
            sys.exit(128 + signal.SIGTERM)  # the worker died before the signal was set: nothing to run for
    os.execv(sys.executable, [sys.executable, "-m", "src.run", *sys.argv[1:]])


if __name__ == "__main__":
    main()
