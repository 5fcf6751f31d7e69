"""``results.json``, the local record of a run, as one typed definition (``RunRecord``, schema 1) and the few
functions that change it. ``src`` writes it (``record_io``) and ``analysis`` reads it against these types
(``analysis.runs.schema``); W&B mirrors it. Importing it loads neither torch nor numpy.
"""
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Dict, List, Literal, Optional, TypedDict

from src.identity import config_hash

from .files import DiskFull, disk_full, is_disk_full

SCHEMA = 1
Status = Literal["running", "completed", "failed", "interrupted", "pruned"]  # pruned: src.tune stopped it early
# a measurement: the analysis reads a value that is not a finite number (a string, NaN) as not measured, not malformed
MEASURED = "measured"
Measured = Annotated[float, MEASURED]


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
    train_loss: Measured
    val_loss: Measured
    top1: Measured
    top5: Measured
    top1_branch: List[Measured]  # each branch head's top-1 alone, S first
    lr: Measured  # at the start of the epoch
    epoch_time_s: Measured
    images_per_s: Measured  # training images per second, over all ranks
    data_wait_frac: Measured  # the share of the steps' time spent waiting for the next batch, over all ranks


class EpochRow(EpochMetrics, total=False):
    """One ``history`` entry."""
    ema_top1: Measured  # the EMA weights' top-1, only with ``train.ema``
    selection_top1: Measured  # the selection split's top-1 and loss, only with ``data.selection``
    selection_loss: Measured


class Final(TypedDict, total=False):
    """The last epoch's metrics (``selection_top1`` only with ``data.selection``)."""
    top1: Measured
    top5: Measured
    loss: Measured  # validation loss
    top1_branch: List[Measured]
    selection_top1: Measured


class Best(TypedDict):
    """The epoch with the best top-1: on the selection split where there is one (``data.selection``), so that the
    test split's top-1 is not what chose it."""
    top1: Measured
    top5: Measured
    epoch: int
    top1_branch: Optional[List[Measured]]


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


class _ImageCounts(TypedDict):
    num_train: int
    num_val: int


class DataSizes(_ImageCounts, total=False):
    """How many images the run trained and validated on (after ``data.limit_*``): the validation count sets the
    binomial noise of its top-1, which the analysis's flags judge against. ``val_units``: the validation set's
    independent units, its distinct sources where images share one (``src.data.validation_sources``: 360 digits
    under the proxy's 10,080 renders); absent where every image is its own unit (= ``num_val``) and in older
    results."""
    val_units: int
    num_selection: int  # the selection split's images (``data.selection``); absent without one


def data_sizes(num_train: int, num_val: int, val_units: Optional[int], num_selection: int = 0) -> DataSizes:
    """``val_units`` None: every validation image is its own unit, and the record leaves it out; so is
    ``num_selection`` 0 (no selection split)."""
    sizes: DataSizes = {"num_train": num_train, "num_val": num_val}
    if val_units is not None:
        sizes["val_units"] = val_units
    if num_selection:
        sizes["num_selection"] = num_selection
    return sizes


class StartRecord(TypedDict):
    """A run started from weights (``model.pretrained``, ``src.train.warm_start``), evaluated before its first step."""
    source: str  # the file, or "hub"
    loaded: int  # tensors loaded; the others started fresh
    fresh: List[str]  # what started fresh and why: "head.0, head.1 (4 tensors): 10 classes, the checkpoint has 1000"
    unused: int  # checkpoint tensors the model had no place for
    top1: Measured
    top5: Measured
    loss: Measured
    top1_branch: List[Measured]


class Evaluation(TypedDict):
    """A record of ``python -m src.eval``: a checkpoint scored on a test set, nothing trained."""
    source: str  # the checkpoint
    set: str  # the test set's name
    trained_epochs: Optional[int]  # the epochs the checkpoint had trained
    trained_steps: Optional[int]
    per_class: Dict[str, Dict[str, Measured]]  # class name -> {"top1", "images"}


class WandbInfo(TypedDict):
    mode: str  # online or offline
    run_id: str
    dir: str  # the folder holding W&B's files for this run


class RunRecord(TypedDict):
    """``results.json`` (schema 1), present from a job's start with ``status: running``."""
    schema: int
    status: Status
    reason: Optional[str]  # why a run failed, was interrupted or pruned
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
    classes: Optional[List[str]]  # the class names in label order; absent in older results
    start: Optional[StartRecord]  # started from weights; None: random init (absent in older results)
    evaluation: Optional[Evaluation]  # a src.eval record (absent in training runs)


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
            "lost_launches": [], "classes": None, "start": None, "evaluation": None}


def record_build(record: RunRecord, model: ModelSummary, costs: Dict[str, float], provenance: Provenance,
                 data_sizes: DataSizes, classes: List[str]) -> None:
    """What was built: the architecture, its costs (``params_m``, ``gmacs``, ``fusion_*``), the provenance, the
    data's sizes and its class names."""
    record.update(model=model, **costs, provenance=provenance, data_sizes=data_sizes, classes=list(classes))


def record_start(record: RunRecord, start: Optional[StartRecord]) -> None:
    if start is not None:
        record["start"] = start


def record_wandb(record: RunRecord, info: Optional[WandbInfo]) -> None:
    record["wandb"] = info


def record_epoch(record: RunRecord, history: List[EpochRow], best: Optional[Best], wall_time_s: float,
                 peak_memory_mb: float) -> None:
    record.update(history=history, best=best, wall_time_s=wall_time_s)
    record["provenance"]["peak_memory_mb"] = round(peak_memory_mb, 1)


def mark_completed(record: RunRecord, last: EpochRow, best: Optional[Best], wall_time_s: float) -> None:
    """Completed: ``final`` is the last epoch's row."""
    final = {"top1": last["top1"], "top5": last["top5"], "loss": last["val_loss"], "top1_branch": last["top1_branch"]}
    if "selection_top1" in last:  # data.selection: what the run was chosen on, apart from the test split's top1
        final["selection_top1"] = last["selection_top1"]
    record.update(status="completed", final=final,
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
