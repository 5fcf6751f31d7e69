"""``results.json``, the local record of a run, as code: its typed schema (``RunRecord``), the few functions that
change it, how it is written, and how a run names itself (W&B group, ``arch/*`` keys) and records what produced it.

``src.run`` imports this module before Hydra answers ``--help``: torch and timm load only inside ``provenance``.
"""
import errno
import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Optional, Sequence, TypedDict

import numpy as np

SCHEMA = 1
RESULTS_FILE = "results.json"
PREDICTIONS_FILE = "val_predictions.npz"
# the files of a run dir written through ``write_atomic``: their temp files are ``.NAME.*.tmp``
KNOWN_FILES = ("results", "val_predictions", "metrics", "last", "best")
ROOT = Path(__file__).resolve().parents[2]
# Keys that say how to run, not what to train: they never change a job's identity (nor its W&B group).
NON_IDENTITY_KEYS = ("force", "resume", "threads", "progress", "save_checkpoints", "ckpt_every_steps",
                     "on_busy")
Status = Literal["running", "completed", "failed", "interrupted"]


class ModelSummary(TypedDict):
    """The architecture as built (``build.model_summary``)."""
    name: str
    fusion: str
    img_size: int
    patch_size: List[int]  # one per branch, S first
    embed_dim: List[int]
    depth: List[List[int]]  # K entries of (N, M, L_extra), CrossViT's triple
    num_heads: List[int]
    fusion_layers: Optional[int]  # ``fusion.layers``; None: CrossViT's L_extra (0 means one)
    class_token: bool
    num_branches: int


class EpochMetrics(TypedDict):
    """What every ``history`` entry holds; accuracies in percent."""
    epoch: int  # 0-based
    train_loss: float
    val_loss: float
    top1: float
    top5: float
    top1_branch: List[float]  # each branch head's top-1 alone, S first
    lr: float  # at the start of the epoch
    epoch_time_s: float
    images_per_s: float  # training images per second, over all ranks
    data_wait_frac: float  # the share of the steps' time spent waiting for the next batch, over all ranks


class EpochRow(EpochMetrics, total=False):
    """One ``history`` entry."""
    ema_top1: float  # the EMA weights' top-1, only with ``train.ema``


class Final(TypedDict):
    """The last epoch's metrics."""
    top1: float
    top5: float
    loss: float  # validation loss
    top1_branch: List[float]


class Best(TypedDict):
    """The epoch with the best top-1."""
    top1: float
    top5: float
    epoch: int
    top1_branch: Optional[List[float]]


class Provenance(TypedDict):
    """What produced the numbers: on the CPU the thread count changes them (same config and seed, other top-1)."""
    git_sha: Optional[str]
    git_dirty: Optional[bool]  # tracked files changed since that commit
    torch: str
    timm: str
    python: str
    device: str  # the GPU name, or the CPU model with the vector ISA torch's kernels use: "AMD EPYC (AVX2)"
    threads: int  # torch's CPU threads
    peak_memory_mb: float  # CUDA peak allocated, else the process's peak resident set size


PROVENANCE_KEYS = tuple(Provenance.__annotations__)


class DataSizes(TypedDict):
    """How many images the run trained and validated on (after ``data.limit_*``): the validation count sets the
    binomial noise of its top-1, which the analysis's flags judge against."""
    num_train: int
    num_val: int


class WandbInfo(TypedDict):
    mode: str  # online or offline
    run_id: str
    dir: str  # the folder holding W&B's files for this run


class RunRecord(TypedDict):
    """``results.json`` (schema 1), present from a job's start with ``status: running``."""
    schema: int
    status: Status
    reason: Optional[str]  # why a run failed or was interrupted
    config: Dict[str, Any]  # the resolved config
    choices: Dict[str, Any]  # Hydra's group choices (model, fusion, data, ...), without hydra/*
    overrides: List[str]  # the command line's overrides (a re-queued agent run keeps its first launch's)
    config_hash: str  # sha256 of the resolved config
    seed: int
    model: Optional[ModelSummary]
    data_sizes: Optional[DataSizes]  # set with the model; absent in older results
    params_m: Optional[float]  # millions of parameters
    gmacs: Optional[float]  # GMACs of one image
    fusion_params_m: Optional[float]  # the fusion modules alone
    fusion_gmacs: Optional[float]
    final: Optional[Final]  # set when completed
    best: Optional[Best]
    history: List[EpochRow]
    provenance: Optional[Provenance]
    wall_time_s: Optional[float]
    run_dir: str  # absolute
    wandb: Optional[WandbInfo]  # None: no W&B run
    started_at: str  # ISO 8601, UTC
    finished_at: Optional[str]
    lost_launches: List[str]  # earlier launches that died without recording how (a kill, a full disk)


# -- the record's changes ------------------------------------------------------------------------------------
def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_record(config: Dict[str, Any], choices: Dict[str, Any], overrides: List[str], seed: int,
               run_dir: Path) -> RunRecord:
    return {"schema": SCHEMA, "status": "running", "reason": None, "config": config, "choices": choices,
            "overrides": overrides, "config_hash": config_hash(config), "seed": seed,
            "model": None, "data_sizes": None, "params_m": None, "gmacs": None, "fusion_params_m": None,
            "fusion_gmacs": None, "final": None, "best": None, "history": [], "provenance": None, "wall_time_s": None,
            "run_dir": str(Path(run_dir).resolve()), "wandb": None, "started_at": now_iso(), "finished_at": None,
            "lost_launches": []}


def record_build(record: RunRecord, model: ModelSummary, costs: Dict[str, float], provenance: Provenance,
                 data_sizes: DataSizes) -> None:
    """What was built: the architecture, its costs (``params_m``, ``gmacs``, ``fusion_*``), the provenance and
    the data's sizes."""
    record.update(model=model, **costs, provenance=provenance, data_sizes=data_sizes)


def record_wandb(record: RunRecord, info: Optional[WandbInfo]) -> None:
    record["wandb"] = info


def record_epoch(record: RunRecord, history: List[EpochRow], best: Optional[Best], wall_time_s: float,
                 peak_memory_mb: float) -> None:
    record.update(history=history, best=best, wall_time_s=wall_time_s)
    record["provenance"]["peak_memory_mb"] = round(peak_memory_mb, 1)


def mark_completed(record: RunRecord, last: EpochRow, best: Optional[Best], wall_time_s: float) -> None:
    """Completed: ``final`` is the last epoch's row."""
    record.update(status="completed", final={"top1": last["top1"], "top5": last["top5"], "loss": last["val_loss"],
                                             "top1_branch": last["top1_branch"]},
                  best=best, wall_time_s=wall_time_s, finished_at=now_iso())


def mark_interrupted(record: RunRecord, reason: str, wall_time_s: float) -> None:
    record.update(status="interrupted", reason=reason, wall_time_s=wall_time_s, finished_at=now_iso())


def mark_failed(record: RunRecord, error: BaseException, wall_time_s: float) -> None:
    record.update(status="failed", reason=failure_reason(error, Path(record["run_dir"])), wall_time_s=wall_time_s,
                  finished_at=now_iso())


def failure_reason(error: BaseException, run_dir: Path) -> str:
    """``Type: message``; a full disk as ``DiskFull: disk full at FOLDER (...)`` wherever it struck."""
    if not isinstance(error, DiskFull) and is_disk_full(error, run_dir, None):
        where = Path(error.filename).parent if getattr(error, "filename", None) else run_dir
        error = disk_full(where, None, error)
    if isinstance(error, DiskFull):
        return f"DiskFull: {error.strerror}"
    return f"{type(error).__name__}: {error}"


# -- files ---------------------------------------------------------------------------------------------------
RESERVE_FILE = ".disk_reserve"  # freed when the disk fills, so that the failure itself can still be recorded
RESERVE_BYTES = 1 << 20
TEMP_SUFFIX = ".tmp"


class DiskFull(OSError):
    """No space left: names the folder, what the write needed and what is free."""


def disk_full(folder: Path, needed_bytes: Optional[int], error: BaseException) -> DiskFull:
    free = shutil.disk_usage(folder).free if folder.exists() else 0
    needed = f"about {needed_bytes / 2**20:.1f} MB needed, " if needed_bytes else ""
    return DiskFull(errno.ENOSPC, f"disk full at {folder} ({needed}{free / 2**20:.1f} MB free): free space there "
                                  f"or point hydra.run.dir / hydra.sweep.dir elsewhere, then run the same command "
                                  f"again to resume ({type(error).__name__}: {str(error).strip()[:200]})")


def is_disk_full(error: BaseException, folder: Path, needed_bytes: Optional[int]) -> bool:
    """ENOSPC, or torch.save's C++ writer failing (a RuntimeError, "unexpected pos") on a disk with less free
    space than the write needed."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(error, RuntimeError) and folder.exists():
        return shutil.disk_usage(folder).free < max(needed_bytes or 0, 1 << 16)
    return False


@functools.lru_cache(maxsize=None)
def file_mode() -> int:
    """What ``open`` would give a new file under the umask (mkstemp's files are 0600). Read once a process: reading
    it means setting it, and another thread creating a file in between would get the wrong mode."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: Path, write: Callable[[Any], Any], keep_previous: Optional[Path] = None,
                 needed_bytes: Optional[int] = None) -> Path:
    """``write(file)`` into a temp file in ``path``'s folder, fsync, then rename it over ``path``: a reader never
    sees half a file, and a failure (disk full, a kill) before the rename leaves ``path`` as it was and removes
    the temp file (a kill leaves it for ``remove_temp_files``). With ``keep_previous``, the current ``path`` is
    moved there just before the rename. A full disk raises ``DiskFull`` naming the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_path = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        os.fchmod(handle, file_mode())
        with os.fdopen(handle, "wb") as temp:
            write(temp)
            temp.flush()
            os.fsync(temp.fileno())
        if keep_previous is not None:
            try:  # no check-then-rename: another writer may have moved it in between
                os.replace(path, keep_previous)  # last.pt -> last.prev.pt, then the new one becomes last.pt
            except FileNotFoundError:
                pass
        os.replace(temp_path, path)
        _fsync_dir(path.parent)
    except BaseException as error:
        Path(temp_path).unlink(missing_ok=True)
        if is_disk_full(error, path.parent, needed_bytes):
            raise disk_full(path.parent, needed_bytes, error) from error
        raise
    return path


def remove_temp_files(run_dir: Path) -> List[Path]:
    """The temp files of writes a kill interrupted (``.last.pt.*.tmp`` etc.); call with the run dir's lock held."""
    removed = []
    for temp in Path(run_dir).glob(f".*{TEMP_SUFFIX}"):
        if temp.is_file() and temp.name.split(".")[1] in KNOWN_FILES:
            temp.unlink(missing_ok=True)
            removed.append(temp)
    return removed


def reserve_space(run_dir: Path) -> None:
    """Sets aside ``RESERVE_BYTES`` in the run dir, given back by ``release_space`` when the disk fills."""
    path = Path(run_dir) / RESERVE_FILE
    try:
        if not path.is_file() or path.stat().st_size < RESERVE_BYTES:
            with open(path, "wb") as file:
                file.write(bytes(RESERVE_BYTES))  # real blocks, not a sparse file: freeing them frees space
                file.flush()
                os.fsync(file.fileno())
    except OSError:
        path.unlink(missing_ok=True)  # already full: nothing to set aside; the next start records what happened


def release_space(run_dir: Path) -> bool:
    path = Path(run_dir) / RESERVE_FILE
    if not path.is_file():
        return False
    path.unlink()
    return True


def _fsync_dir(folder: Path) -> None:
    """Makes the rename itself durable."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not every platform can open a folder
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_rank_zero() -> bool:
    """DDP (torchrun sets RANK): only rank 0 writes a run's record files."""
    return int(os.environ.get("RANK", 0)) == 0


def write_results(run_dir: Path, record: RunRecord) -> Path:
    """Rank 0 only. On a full disk the run dir's reserve is given back and the write tried once more, so that
    the record of a failure (or of the last epoch) still lands."""
    path = Path(run_dir) / RESULTS_FILE
    if is_rank_zero():
        text = json.dumps(record, indent=2, default=str) + "\n"
        try:
            write_atomic(path, lambda file: file.write(text.encode()), needed_bytes=len(text))
        except DiskFull:
            if not release_space(run_dir):
                raise
            write_atomic(path, lambda file: file.write(text.encode()), needed_bytes=len(text))
    return path


def write_predictions(run_dir: Path, predictions: Dict[str, np.ndarray]) -> Path:
    """``val_predictions.npz``: ``target``, ``pred`` (averaged logits) and ``pred_branch`` ([branches, N],
    S first) as int64, in the validation loader's fixed order, so that runs on the same data pair image by
    image (McNemar's test for single-seed comparisons). Compressed: class indices are mostly zero bytes, 16 KB
    instead of 320 KB for the proxy's 10,080 images."""
    path = Path(run_dir) / PREDICTIONS_FILE
    if is_rank_zero():
        write_atomic(path, lambda file: np.savez_compressed(file, **predictions))
    return path


def read_results(run_dir: Path) -> RunRecord:
    return json.loads((Path(run_dir) / RESULTS_FILE).read_text())


# -- provenance ----------------------------------------------------------------------------------------------
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


# -- how a run names itself: hashes, W&B group, readable architecture ---------------------------------------
def config_hash(resolved_config: Dict[str, Any]) -> str:
    """sha256 of the resolved config, independent of key order: equal configs, equal hashes."""
    return hashlib.sha256(json.dumps(resolved_config, sort_keys=True, default=str).encode()).hexdigest()


def format_pair(values: Optional[Sequence[Any]]) -> Optional[str]:
    """[12, 16] -> "12/16" (one entry per branch)."""
    if values is None:
        return None
    return "/".join(f"{value:g}" if isinstance(value, float) else str(value) for value in values)


def format_depth(depth: Optional[Sequence[Sequence[int]]], fusion_layers: Optional[int]) -> Optional[str]:
    """[[1, 4, 0]] * 3 with L=1 -> "3x(1,4,1)": K encoders of N S-branch blocks, M L-branch blocks and L
    fusion layers (CrossViT's 0 means one; ``fusion.layers`` overrides it); with n branches, n block counts then
    L ("2x(1,2,1,1)")."""
    if not depth:
        return None
    stages = []
    for entry in depth:
        *blocks, extra = entry if len(entry) > 2 else (*entry, 0)
        layers = fusion_layers if fusion_layers is not None else max(1, extra)
        stages.append("(" + ",".join(str(b) for b in (*blocks, layers)) + ")")
    if len(set(stages)) == 1:
        return f"{len(stages)}x{stages[0]}"
    return "+".join(stages)


def arch_keys(model: ModelSummary) -> Dict[str, Any]:
    """The record's ``model`` as readable ``arch/...`` W&B config keys (sweep-locked ``model.*`` keys keep the
    sweep's raw strings; these are always what was built)."""
    return {"arch/patch_size": format_pair(model.get("patch_size")),
            "arch/embed_dim": format_pair(model.get("embed_dim")),
            "arch/depth": format_depth(model.get("depth"), model.get("fusion_layers")),
            "arch/K": len(model["depth"]) if model.get("depth") else None, "arch/img_size": model.get("img_size"),
            "arch/class_token": model.get("class_token"), "arch/fusion": model.get("fusion")}


def group_name(config: Dict[str, Any]) -> str:
    """``micro_32-cross-p4/8-w48/96-2x(1,2,1)-digits-1a2b3c``: model, fusion, patches, widths, depth, data, and
    a short hash of the config without seed, logger and run-only keys, so that runs differing in anything
    else (lr, epochs, ...) never share a group (W&B's grouping then shows mean and spread over seeds)."""
    model, fusion = config["model"], config["fusion"]
    parts = [model["name"].removeprefix("fusionvit_"), fusion["name"], f"p{format_pair(model.get('patch_size'))}",
             f"w{format_pair(model.get('embed_dim'))}", format_depth(model.get("depth"), fusion.get("layers"))]
    if model.get("class_token") is False:
        parts.append("nocls")
    parts.append(config["data"]["name"])
    return "-".join(str(part) for part in parts if part) + "-" + grouped_hash(config)[:6]


def grouped_hash(config: Dict[str, Any]) -> str:
    ungrouped = NON_IDENTITY_KEYS + ("device",)  # nor does the device split a group
    train = {k: v for k, v in config.get("train", {}).items() if k not in ungrouped}
    kept = {k: v for k, v in config.items() if k not in ("seed", "logger", "train")}
    return config_hash({**kept, "train": train})

