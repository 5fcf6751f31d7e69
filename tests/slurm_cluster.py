"""A single-node SLURM cluster for the tests, brought up by hand as root (Debian's slurm-wlm and munge; no systemd):
munged, then slurmctld and slurmd with a minimal slurm.conf, as ../shared/NOTES.md records. ``.ci/run`` installs the
packages when it runs as root; elsewhere ``unavailable()`` says why the tests that need it skip."""
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

CONF = Path("/etc/slurm/slurm.conf")
MARK = "# written by tests/slurm_cluster.py"
DAEMONS = ("munged", "slurmctld", "slurmd")


def unavailable() -> Optional[str]:
    """Why a real SLURM cannot be brought up here (None: it can)."""
    missing = [tool for tool in (*DAEMONS, "sbatch", "scontrol", "sinfo") if shutil.which(tool) is None
               and not Path(f"/usr/sbin/{tool}").exists()]
    if missing:
        return f"no SLURM here ({', '.join(missing)} missing): .ci/run installs slurm-wlm and munge when run as root"
    if os.geteuid() != 0:
        return "SLURM's daemons are started as root: run the tests as root (as .ci/run does in CI)"
    return None


def config(cpus: int, memory_mb: int) -> str:
    node = socket.gethostname().split(".")[0]
    return f"""{MARK}
ClusterName=fusionvit-tests
SlurmctldHost={node}
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
SlurmUser=slurm
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MpiDefault=none
SchedulerType=sched/backfill
InactiveLimit=0
KillWait=30
MinJobAge=300
NodeName={node} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def running(name: str) -> bool:
    return subprocess.run(["pgrep", "-x", name], stdout=subprocess.DEVNULL).returncode == 0


def node_idle() -> bool:
    done = subprocess.run(["sinfo", "-h", "-o", "%T"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return done.returncode == 0 and done.stdout.strip() in ("idle", "mixed", "allocated")


def bring_up(timeout_s: float = 60) -> None:
    """Starts what is not running (munged, slurmctld, slurmd) and waits until the node takes jobs."""
    if all(running(name) for name in DAEMONS) and node_idle():
        return
    if not CONF.is_file() or MARK in CONF.read_text():
        memory = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.8)
        CONF.parent.mkdir(parents=True, exist_ok=True)
        CONF.write_text(config(os.cpu_count() or 1, memory))
    for folder, owner in (("/run/munge", "munge"), ("/var/spool/slurmctld", "slurm"), ("/var/spool/slurmd", "root"),
                          ("/var/log/slurm", "slurm")):
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.chown(folder, owner, owner)
    if not running("munged"):
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
    if not running("slurmctld"):
        subprocess.run(["/usr/sbin/slurmctld"], check=True)
    if not running("slurmd"):
        subprocess.run(["/usr/sbin/slurmd"], check=True)
    deadline = time.time() + timeout_s
    while not node_idle():
        if time.time() > deadline:
            log = Path("/var/log/slurm/slurmctld.log")
            raise RuntimeError("SLURM did not come up in time: " + (log.read_text()[-2000:] if log.is_file() else ""))
        time.sleep(0.5)
