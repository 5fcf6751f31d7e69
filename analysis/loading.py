"""Runs -> one pandas row each, from ``results.json`` files (Hydra run and multirun dirs) or the W&B API.

A row holds the run's Hydra choices, the values it swept (each ``key=value`` override, read back from the
resolved config so that runs that kept the default get the same column), readable architecture columns
(``patch_size`` "12/16", ``embed_dim`` "192/384", ``depth`` "3x(1,4,1)" = K x (N, M, L)), its seed, metrics,
cost and status. Folders that are not a finished run of ours are skipped with one warning line each. Runs
found twice (same config hash and seed) are counted once, with a warning (see ``dedupe``). Per-branch top-1
(``final.top1_branch``, S first; absent in older results) becomes ``top1_branch0``, ``top1_branch1``, ...
"""
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import pandas as pd
import yaml

from src.train.metadata import format_depth, format_pair  # noqa: F401 - the names runs are tabulated under
from .dedupe import drop_duplicate_runs

log = logging.getLogger(__name__)
RESULTS_FILE = "results.json"
SCHEMA = 1
# Choices that never describe the ablation itself.
IGNORED_CHOICES = ("logger", "experiment")
IGNORED_OVERRIDE_PREFIXES = ("hydra", "seed", "logger", "+experiment", "experiment", "train.device",
                             "train.progress", "train.threads")
FAILED_STATUSES = ("failed", "interrupted")


class NoRunsError(RuntimeError):
    """Nothing to collate: the message says where we looked."""


@dataclass
class Collection:
    """What ``load_runs`` found: completed runs, failed ones (listed apart) and skipped folders with why."""
    runs: pd.DataFrame
    failed: pd.DataFrame
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    candidate_factors: List[str] = field(default_factory=list)  # columns that may describe the ablation
    duplicates: List[str] = field(default_factory=list)  # one line per run found in several folders


def first_set(*values: Any) -> Any:
    return next(value for value in values if value is not None)


def lookup(config: Dict[str, Any], dotted_key: str) -> Any:
    value: Any = config
    for part in dotted_key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


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


def results_to_row(results: Dict[str, Any]) -> Dict[str, Any]:
    """One results.json (schema 1) -> one flat row."""
    config = results.get("config") or {}
    choices = {k: v for k, v in (results.get("choices") or {}).items() if k not in IGNORED_CHOICES}
    model = results.get("model") or {}
    model_config = config.get("model") or {}
    fusion_layers = model.get("fusion_layers", lookup(config, "fusion.layers"))
    depth = model.get("depth") or model_config.get("depth")
    history = results.get("history") or []
    final, best = results.get("final") or {}, results.get("best") or {}
    row = {"run_dir": results.get("run_dir"), "status": results.get("status"), "reason": results.get("reason"),
           "seed": results.get("seed"), "config_hash": results.get("config_hash"), **choices,
           "patch_size": format_pair(model.get("patch_size") or model_config.get("patch_size")),
           "embed_dim": format_pair(model.get("embed_dim") or model_config.get("embed_dim")),
           "depth": format_depth(depth, fusion_layers),
           "K": len(depth) if depth else None, "img_size": model.get("img_size") or model_config.get("img_size"),
           "class_token": first_set(model.get("class_token"), model_config.get("class_token"), True)}
    for key in swept_keys(results.get("overrides") or [], choices):
        row[key] = readable(lookup(config, key))
    images_per_s = [epoch["images_per_s"] for epoch in history if epoch.get("images_per_s")]
    row.update(top1=final.get("top1"), top5=final.get("top5"), loss=final.get("loss"),
               best_top1=best.get("top1"), best_epoch=best.get("epoch"), params_m=results.get("params_m"),
               gmacs=results.get("gmacs"), fusion_params_m=results.get("fusion_params_m"),
               fusion_gmacs=results.get("fusion_gmacs"), wall_time_s=results.get("wall_time_s"),
               images_per_s=sum(images_per_s) / len(images_per_s) if images_per_s else None,
               epochs=len(history), history=history, swept=swept_keys(results.get("overrides") or [], choices))
    for branch, top1 in enumerate(final.get("top1_branch") or []):  # older results have none
        row[f"top1_branch{branch}"] = top1
    provenance = results.get("provenance") or {}  # older results have none
    row.update(device=provenance.get("device"), threads=provenance.get("threads"))
    return row


def problem_with(results: Any) -> Optional[str]:
    """Why a parsed results.json cannot be collated, or None."""
    if not isinstance(results, dict) or "status" not in results or "config" not in results:
        return "foreign: not a results.json of src.run"
    if results.get("schema") != SCHEMA:
        return f"foreign: results schema {results.get('schema')!r}, expected {SCHEMA}"
    if results["status"] == "running":
        return "partial: status 'running' (still training, or killed before it could record why)"
    if results["status"] == "completed" and not isinstance(results.get("final"), dict):
        return "corrupt: status 'completed' but no final metrics"
    if results["status"] not in ("completed",) + FAILED_STATUSES:
        return f"foreign: unknown status {results['status']!r}"
    return None


def find_run_dirs(paths: Sequence[Path]) -> Tuple[List[Path], List[Tuple[str, str]]]:
    """Every results.json under ``paths``, and Hydra job dirs (with ``.hydra/``) that have none."""
    found, skipped = [], []
    for path in paths:
        if not path.exists():
            raise NoRunsError(f"{path} does not exist: give a Hydra run or multirun dir (e.g. multirun/make_run)")
        found += sorted(path.rglob(RESULTS_FILE)) if path.is_dir() else [path]
        for hydra_dir in sorted(path.rglob(".hydra")) if path.is_dir() else []:
            if not (hydra_dir.parent / RESULTS_FILE).exists():
                skipped.append((str(hydra_dir.parent), "partial: no results.json (the job never started)"))
    return found, skipped


def rows_to_frame(rows: List[Dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    return frame.sort_values(["run_dir"]).reset_index(drop=True) if "run_dir" in frame and len(frame) else frame


def load_runs(paths: Sequence[Any], warn=log.warning) -> Collection:
    """Completed, failed and skipped runs under ``paths``; raises NoRunsError when there is no run at all."""
    paths = [Path(path) for path in paths]
    files, skipped = find_run_dirs(paths)
    rows = []
    for file in files:
        try:
            results = json.loads(file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            skipped.append((str(file.parent), f"corrupt: {RESULTS_FILE} is not valid JSON ({error})"))
            continue
        problem = problem_with(results)
        if problem:
            skipped.append((str(file.parent), problem))
            continue
        # Where the file is now, not where it was written: copies and moved sweeps name their own folder,
        # which is where val_predictions.npz is read from too.
        results["run_dir"] = str(file.parent)
        rows.append(results_to_row(results))
    for folder, why in skipped:
        warn(f"skipped {folder}: {why}")
    if not rows:
        looked = ", ".join(str(path) for path in paths)
        raise NoRunsError(f"no runs found: no readable {RESULTS_FILE} of src.run under {looked} "
                          f"({len(skipped)} folder(s) skipped)")
    return split_by_status(rows, skipped, warn)


def split_by_status(rows: List[Dict[str, Any]], skipped: List[Tuple[str, str]], warn=log.warning) -> Collection:
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


def warn_mixed_provenance(runs: pd.DataFrame, warn) -> None:
    """On the CPU the thread count changes the numbers (same config and seed): say when a table pools runs
    from different devices or thread counts."""
    for column, what in (("device", "devices"), ("threads", "thread counts")):
        values = sorted({str(value) for value in runs.get(column, pd.Series(dtype=object)).dropna()})
        if len(values) > 1:
            counts = runs[column].astype(str).value_counts()
            listed = ", ".join(f"{value} ({counts[value]} runs)" for value in values)
            warn(f"the table pools runs from different {what}: {listed}; results can differ with them "
                 f"(keep train.threads and the device fixed for runs you compare)")


def candidate_factors(frame: pd.DataFrame) -> List[str]:
    """Columns that may describe an ablation, the most readable first (see stats.varying_factors)."""
    # arch (a conf/arch paper row) last: it names a row only where the architecture columns cannot
    readable_first = ["fusion", "model", "data", "patch_size", "embed_dim", "depth", "K", "img_size", "class_token",
                      "arch"]
    choices = [c for c in frame.columns if c in ("optim", "sched")]
    swept = sorted({key for keys in frame.get("swept", []) for key in keys})
    ordered = readable_first + choices + swept
    return [column for column in dict.fromkeys(ordered) if column in frame.columns]


# -- W&B ------------------------------------------------------------------------------------------------
WANDB_STATES = {"finished": "completed", "failed": "failed", "crashed": "failed", "killed": "interrupted",
                "preempting": "running", "preempted": "interrupted", "running": "running"}
HISTORY_KEYS = {"epoch": "epoch", "val/top1": "top1", "val/top5": "top5", "val/loss": "val_loss",
                "train/epoch_loss": "train_loss", "train/epoch_images_per_s": "images_per_s"}


def unflatten(flat: Dict[str, Any]) -> Dict[str, Any]:
    nested: Dict[str, Any] = {}
    for key, value in flat.items():
        if "." not in key:
            continue
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def sweep_value(value: Any) -> Any:
    """A W&B sweep locks the keys it sets to its raw value: a list the sweep file wrote as "[4,8]" comes back
    as that string. Such strings are parsed back (as Hydra parsed them)."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    return value


def wandb_run_to_row(run) -> Dict[str, Any]:
    """A ``wandb.apis.public.Run`` -> the row ``results_to_row`` gives for its results.json.

    src.run logs the flattened config (``model.patch_size``, ...) with the Hydra choices as plain keys
    (``fusion``, ``model``, ...) and readable ``arch/...`` keys; its summary holds ``final/*``, ``best/top1``,
    costs, ``images_per_s``, ``wall_time_s``, ``config_hash``, ``overrides`` and ``provenance/*``; the history
    comes from the per-epoch rows (``epoch``, ``val/top1``, ...).
    """
    flat = {key: sweep_value(value) for key, value in dict(run.config).items() if not key.startswith("_")}
    config = unflatten(flat)
    summary = dict(run.summary)
    model = config.get("model", {})
    results = {
        "schema": SCHEMA, "status": WANDB_STATES.get(run.state, run.state), "reason": None, "config": config,
        "choices": {key: value for key, value in flat.items()
                    if "." not in key and "/" not in key and isinstance(value, str)},
        "overrides": summary.get("overrides") or [], "seed": flat.get("seed"),
        "config_hash": summary.get("config_hash"), "run_dir": getattr(run, "url", None) or run.id,
        "model": {"name": model.get("name"), "img_size": model.get("img_size"),
                  "patch_size": model.get("patch_size"), "embed_dim": model.get("embed_dim"),
                  "depth": model.get("depth"), "fusion_layers": config.get("fusion", {}).get("layers"),
                  "class_token": model.get("class_token")},
        "params_m": summary.get("params_m"), "gmacs": summary.get("gmacs"),
        "fusion_params_m": summary.get("fusion_params_m"), "fusion_gmacs": summary.get("fusion_gmacs"),
        "final": {"top1": summary.get("final/top1"), "top5": summary.get("final/top5"),
                  "loss": summary.get("val/loss"), "top1_branch": wandb_branch_top1(summary)},
        "best": {"top1": summary.get("best/top1")}, "history": wandb_history(run),
        "wall_time_s": summary.get("wall_time_s", summary.get("_runtime")),
        "provenance": {key.split("/", 1)[1]: value for key, value in summary.items() if key.startswith("provenance/")},
    }
    row = results_to_row(results)
    if summary.get("images_per_s") is not None:  # the run's own mean, as results_to_row takes it from history
        row["images_per_s"] = summary["images_per_s"]
    return row


def wandb_history(run) -> List[Dict[str, Any]]:
    """The per-epoch rows of a W&B run's history, under results.json's history names."""
    history = []
    try:
        for record in run.history(keys=["epoch", "val/top1"], pandas=False):
            history.append({name: record.get(key) for key, name in HISTORY_KEYS.items()})
    except Exception as error:  # noqa: BLE001 - a run without history still has its final numbers
        log.warning("W&B run %s: no history (%s)", getattr(run, "id", "?"), error)
    return history


def wandb_branch_top1(summary: Dict[str, Any]) -> List[float]:
    """``final/top1_branch0``, ``final/top1_branch1``, ... (S first) as src.run logs them; [] when absent."""
    values = []
    while f"final/top1_branch{len(values)}" in summary:
        values.append(summary[f"final/top1_branch{len(values)}"])
    return values


@dataclass
class WandbFilter:
    """Which runs of a project to read: a sweep id, a group, a tag (each optional)."""
    sweep: Optional[str] = None
    group: Optional[str] = None
    tag: Optional[str] = None

    def server_filters(self) -> Dict[str, Any]:
        """The W&B API's (MongoDB-style) run filters."""
        filters: Dict[str, Any] = {}
        if self.sweep:
            filters["sweep"] = self.sweep
        if self.group:
            filters["group"] = self.group
        if self.tag:
            filters["tags"] = {"$in": [self.tag]}
        return filters

    def keeps(self, run) -> bool:
        """The same test on the client, so that a server that ignores a filter cannot widen the table."""
        sweep = getattr(run, "sweep_name", None) or getattr(getattr(run, "sweep", None), "id", None)
        return ((not self.sweep or sweep == self.sweep) and (not self.group or getattr(run, "group", None) == self.group)
                and (not self.tag or self.tag in (getattr(run, "tags", None) or [])))

    def describe(self, path: str) -> str:
        parts = [f"{name} {value}" for name, value in (("sweep", self.sweep), ("group", self.group),
                                                        ("tag", self.tag)) if value]
        return f"W&B project {path}" + (f" ({', '.join(parts)})" if parts else "")


def wandb_api(timeout: int = 30):
    """``wandb.Api`` when an API key is configured; a missing key fails at once instead of prompting."""
    import wandb

    from src.train.wandb_logger import api_key_configured

    if not api_key_configured():
        raise NoRunsError("no W&B API key configured: run `wandb login` or set WANDB_API_KEY (runs logged "
                          "offline are collated from their run dirs: python -m analysis.collate RUN_DIR)")
    return wandb.Api(timeout=timeout)


def load_wandb_runs(path: str, api=None, warn=log.warning, where: Optional[WandbFilter] = None) -> Collection:
    """The runs of W&B project ``ENTITY/PROJECT`` that ``where`` keeps (needs an API key and the network)."""
    where = where or WandbFilter()
    api = api if api is not None else wandb_api()
    rows, skipped = [], []
    try:
        runs = [run for run in api.runs(path, filters=where.server_filters()) if where.keeps(run)]
    except NoRunsError:
        raise
    except Exception as error:  # noqa: BLE001 - an unreachable server or a wrong path: say which
        raise NoRunsError(f"could not read {where.describe(path)} ({type(error).__name__}: {error})") from error
    for run in runs:
        row = wandb_run_to_row(run)
        if row["status"] == "running":
            skipped.append((row["run_dir"], f"partial: W&B state {run.state!r}"))
            continue
        rows.append(row)
    for folder, why in skipped:
        warn(f"skipped {folder}: {why}")
    if not rows:
        raise NoRunsError(f"no runs found in {where.describe(path)}: looked for finished, failed, crashed or "
                          f"killed runs ({len(skipped)} still running)")
    return split_by_status(rows, skipped, warn)
