"""A run's record (``results.json``, typed by ``src.train.record.RunRecord``) -> one pandas row, and the rows of
a set of runs -> a ``Collection`` (completed runs, failed ones, skipped folders, duplicates).

A row holds the run's Hydra choices, the values it swept (each ``key=value`` override, read back from the
resolved config so that runs that kept the default get the same column), readable architecture columns
(``patch_size`` "12/16", ``embed_dim`` "192/384", ``depth`` "3x(1,4,1)" = K x (N, M, L)), its seed, metrics,
cost and status. Per-branch top-1 (``final.top1_branch``, S first; absent in older results) becomes
``top1_branch0``, ``top1_branch1``, ... (none for a one-branch model, whose head is the model); ``num_val`` is
the validation set's size (``data_sizes``, None in older results and W&B runs); ``device``, ``threads``,
``torch``, ``git_sha`` and ``git_dirty`` are the record's ``provenance`` (None in older results). Runs found twice
(same config hash and seed) are counted once, with a warning (see ``dedupe``).
"""
import json
import logging
import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import pandas as pd
from omegaconf import Container, DictConfig, OmegaConf

from src.train.naming import format_depth, format_pair
from src.train.record import RunRecord

from .dedupe import drop_duplicate_runs
from .metrics import FINAL_TOP1, MetricReader, warn_unmeasured

log = logging.getLogger(__name__)
# Choices that never describe the ablation itself.
IGNORED_CHOICES = ("logger", "experiment")
IGNORED_OVERRIDE_PREFIXES = ("hydra", "seed", "logger", "+experiment", "experiment", "train.device",
                             "train.progress", "train.threads")
COSTS = ("params_m", "gmacs", "fusion_params_m", "fusion_gmacs", "wall_time_s")


class NoRunsError(RuntimeError):
    """Nothing to collate: the message says where we looked."""


@dataclass
class Collection:
    """What a loader found: completed runs, failed ones (listed apart) and skipped folders with why."""
    runs: pd.DataFrame
    failed: pd.DataFrame
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    candidate_factors: List[str] = field(default_factory=list)  # columns that may describe the ablation
    duplicates: List[str] = field(default_factory=list)  # one line per run found in several folders


def first_set(*values: Any) -> Any:
    return next(value for value in values if value is not None)


def config_value(config: DictConfig, dotted_key: str) -> Any:
    """The value at ``dotted_key`` (None where the path does not exist), lists and dicts as plain Python."""
    value = OmegaConf.select(config, dotted_key, default=None)
    return OmegaConf.to_container(value) if isinstance(value, Container) else value


def readable(value: Any) -> Any:
    """Lists become short strings so that they can be grouped on and printed."""
    if isinstance(value, (list, tuple)):
        return json.dumps(value, separators=(",", ":"))
    return value


def swept_keys(overrides: Iterable[str], choices: Dict[str, Any]) -> List[str]:
    """Dotted config keys a run set on the command line (group choices are columns already)."""
    keys = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in choices or key.startswith(IGNORED_OVERRIDE_PREFIXES):
            continue
        keys.append(key)
    return keys


def finite_mean(values: Iterable[Optional[float]]) -> Optional[float]:
    finite = [value for value in values if value is not None and math.isfinite(value)]
    return sum(finite) / len(finite) if finite else None


def record_to_row(record: RunRecord) -> Dict[str, Any]:
    """One run's record (schema 1, its field types checked by ``schema``) -> one flat row. Metrics that are not
    finite numbers are NaN, listed in ``metric_problems`` (see ``metrics``)."""
    raw_config = record.get("config") or {}
    config = OmegaConf.create(raw_config)
    choices = {k: v for k, v in (record.get("choices") or {}).items() if k not in IGNORED_CHOICES}
    model = record.get("model") or {}
    model_config = raw_config.get("model") or {}
    fusion_layers = model.get("fusion_layers", config_value(config, "fusion.layers"))
    depth = model.get("depth") or model_config.get("depth")
    metric = MetricReader()
    history = metric.history(record.get("history") or [])
    final, best = record.get("final") or {}, record.get("best") or {}
    row = {"run_dir": record.get("run_dir"), "status": record.get("status"), "reason": record.get("reason"),
           "seed": record.get("seed"), "config_hash": record.get("config_hash"), **choices,
           "patch_size": format_pair(model.get("patch_size") or model_config.get("patch_size")),
           "embed_dim": format_pair(model.get("embed_dim") or model_config.get("embed_dim")),
           "depth": format_depth(depth, fusion_layers),
           "K": len(depth) if depth else None, "img_size": model.get("img_size") or model_config.get("img_size"),
           "class_token": first_set(model.get("class_token"), model_config.get("class_token"), True)}
    swept = swept_keys(record.get("overrides") or [], choices)
    for key in swept:
        row[key] = readable(config_value(config, key))
    row.update(top1=metric(final.get("top1"), FINAL_TOP1, required=record.get("status") == "completed"),
               top5=metric(final.get("top5"), "final.top5"), loss=metric(final.get("loss"), "final.loss"),
               best_top1=metric(best.get("top1"), "best.top1"), best_epoch=best.get("epoch"),
               **{key: metric(record.get(key), key) for key in COSTS},
               images_per_s=finite_mean(epoch.get("images_per_s") or None for epoch in history),
               data_wait_frac=finite_mean(epoch.get("data_wait_frac") for epoch in history),  # None: older results
               epochs=len(history), history=history, swept=swept)
    branch_top1 = metric.values(final.get("top1_branch"), "final.top1_branch") or []  # older results have none
    for branch, top1 in enumerate(branch_top1 if len(branch_top1) > 1 else []):  # one branch: its head is the model
        row[f"top1_branch{branch}"] = top1
    # the validation size sets the binomial noise the flags judge by; older results and W&B runs have none
    row["num_val"] = (record.get("data_sizes") or {}).get("num_val")
    provenance = record.get("provenance") or {}  # older results have none
    row.update({column: provenance.get(column) for column in PROVENANCE_COLUMNS})
    row["metric_problems"] = metric.problems  # popped by split_by_status
    return row


def rows_to_frame(rows: List[Dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    return frame.sort_values(["run_dir"]).reset_index(drop=True) if "run_dir" in frame and len(frame) else frame


def split_by_status(rows: List[Dict[str, Any]], skipped: List[Tuple[str, str]], warn=log.warning,
                    source: Callable[[str], str] = str) -> Collection:
    """The rows as a Collection: completed and failed runs apart, each (config, seed) once, without the completed
    runs that have no finite final top-1 (named, with every other non-finite metric, by ``source(run_dir)``).
    Raises NoRunsError when no row is left."""
    rows = warn_unmeasured(rows, warn, source)
    if not rows:
        raise NoRunsError(f"no runs left: no completed run has a finite {FINAL_TOP1} (see the warnings above)")
    frame = rows_to_frame(rows)
    candidates = candidate_factors(frame)
    duplicates: List[str] = []

    def duplicate(message: str) -> None:
        duplicates.append(message)
        warn(message)

    completed = drop_duplicate_runs(frame[frame["status"] == "completed"].reset_index(drop=True), duplicate)
    failed = drop_duplicate_runs(frame[frame["status"] != "completed"].reset_index(drop=True), duplicate)
    warn_mixed_provenance(completed, warn)
    return Collection(runs=completed, failed=failed, skipped=skipped, candidate_factors=candidates,
                      duplicates=duplicates)


BLOCKED_BY_SEED = "each seed's runs share one"


@dataclass(frozen=True)
class ProvenanceKind:
    """One thing that produced a run's numbers and can differ between the runs of a table."""
    column: str
    plural: str  # "thread counts"
    one: str  # "thread count"
    fix: str  # what to keep fixed for runs you compare
    shown: Callable[[Any], str] = str


SAME_MACHINE = "keep train.threads and the device fixed for runs you compare"
PROVENANCE_KINDS = (
    ProvenanceKind("device", "devices", "device", SAME_MACHINE),
    ProvenanceKind("threads", "thread counts", "thread count", SAME_MACHINE),
    ProvenanceKind("torch", "torch versions", "torch version",
                   "run the rows you compare with one torch, the one constraints.txt pins"),
    ProvenanceKind("git_sha", "commits", "commit", "run the rows you compare at one commit, or check that the "
                   "commits' diff leaves the model, data and training alone", shown=lambda sha: str(sha)[:8]),
    ProvenanceKind("git_dirty", "code states", "code state", "commit before running the rows you compare",
                   shown=lambda dirty: "uncommitted changes" if dirty else "committed"),
)
PROVENANCE_COLUMNS = [kind.column for kind in PROVENANCE_KINDS]  # the row's columns, from results.json's provenance


def blocked_by_seed(runs: pd.DataFrame, column: str) -> bool:
    """Every seed's runs have one value of ``column``: a design blocked by seed, in which the seed-paired
    differences the tests take are each within one device (or thread count, torch version, commit)."""
    if "seed" not in runs:
        return False
    known = runs.dropna(subset=[column])
    by_seed = known.groupby(known["seed"].astype(str))[column]
    return bool((by_seed.nunique() == 1).all() and (by_seed.size() > 1).any())  # one run a seed pairs nothing


# What makes a run's numbers: a commit that changes none of these runs the same jobs the same way.
CODE_PATHS = ("src", "conf", "constraints.txt")


def same_code(shas) -> bool:
    """Whether the commits hold the same CODE_PATHS (their git trees are equal), read from the repository this
    package lives in; False where git or a commit cannot be read (then the mix is warned about)."""
    if len(shas) < 2:
        return False
    repo = Path(__file__).resolve().parents[2]
    trees = set()
    for sha in shas:
        found = subprocess.run(["git", "rev-parse", *[f"{sha}:{path}" for path in CODE_PATHS]], cwd=repo,
                               capture_output=True, text=True)
        if found.returncode != 0:
            return False
        trees.add(found.stdout)
    return len(trees) == 1


def warn_mixed_provenance(runs: pd.DataFrame, warn) -> None:
    """On the CPU the thread count and the vector ISA change the numbers (same config and seed), and so may
    another torch or another commit: one line per kind of provenance a table pools more than one value of, saying
    whether each seed kept to one (then the paired tests compare runs of one value; the means and spreads still
    pool them). ``git_dirty`` warns when committed and uncommitted runs are pooled; a table whose every run was
    uncommitted does not warn (every test run from a working copy would)."""
    for kind in PROVENANCE_KINDS:
        counts = runs.get(kind.column, pd.Series(dtype=object)).dropna().map(kind.shown).value_counts()
        listed = ", ".join(f"{value} ({counts[value]} runs)" for value in sorted(counts.index))
        if kind.column == "git_sha" and len(counts) > 1 and same_code(runs[kind.column].dropna().unique()):
            continue  # commits that differ only outside the code that makes the numbers
        if len(counts) > 1:
            blocked = (f"; {BLOCKED_BY_SEED} {kind.one}, so each seed-paired difference is within one {kind.one}; "
                       f"the means and spreads pool them" if blocked_by_seed(runs, kind.column) else "")
            warn(f"the table pools runs from different {kind.plural}: {listed}{blocked}; results can differ with "
                 f"them ({kind.fix})")


def candidate_factors(frame: pd.DataFrame) -> List[str]:
    """Columns that may describe an ablation, the most readable first (see stats.summary.varying_factors)."""
    # scales (a conf/scales row sets model and fusion together) first: its option names a row in one word.
    # arch (a conf/arch paper row) last: it names a row only where the architecture columns cannot
    readable_first = ["scales", "fusion", "model", "data", "patch_size", "embed_dim", "depth", "K", "img_size",
                      "class_token", "arch"]
    choices = [c for c in frame.columns if c in ("optim", "sched")]
    swept = sorted({key for keys in frame.get("swept", []) for key in keys})
    ordered = readable_first + choices + swept
    return [column for column in dict.fromkeys(ordered) if column in frame.columns]
