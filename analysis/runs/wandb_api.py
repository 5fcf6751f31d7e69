"""Runs from the W&B API (``python -m analysis.collate --wandb ENTITY/PROJECT``): each run's logged config,
summary and per-epoch history become the record ``results.json`` holds (``RunRecord``), then the same row as a
local run (``records.record_to_row``).

src.run logs the flattened config (``model.patch_size``, ...) with the Hydra choices as plain keys (``fusion``,
``model``, ...) and readable ``arch/...`` keys; its summary holds ``final/*``, ``best/top1``, costs,
``images_per_s``, ``wall_time_s``, ``config_hash``, ``overrides`` and ``provenance/*``; the history comes from
the per-epoch rows (``epoch``, ``val/top1``, ...). What W&B does not hold (the run's start and end times, its
folder) is None.
"""
import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import yaml

from src.train.record import SCHEMA, EpochRow, RunRecord
from src.train.wandb_logger import api_key_configured

from .records import Collection, NoRunsError, record_to_row, split_by_status

log = logging.getLogger(__name__)
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


def wandb_run_to_record(run) -> RunRecord:
    """A ``wandb.apis.public.Run`` -> the record its run wrote to results.json, as far as W&B holds it."""
    flat = {key: sweep_value(value) for key, value in dict(run.config).items() if not key.startswith("_")}
    config = unflatten(flat)
    summary = dict(run.summary)
    model, fusion = config.get("model", {}), config.get("fusion", {})
    provenance = {key.split("/", 1)[1]: value for key, value in summary.items() if key.startswith("provenance/")}
    return {
        "schema": SCHEMA, "status": WANDB_STATES.get(run.state, run.state), "reason": None, "config": config,
        "choices": {key: value for key, value in flat.items()
                    if "." not in key and "/" not in key and isinstance(value, str)},
        "overrides": summary.get("overrides") or [], "config_hash": summary.get("config_hash"),
        "seed": flat.get("seed"),
        "model": {"name": model.get("name"), "fusion": fusion.get("name"), "img_size": model.get("img_size"),
                  "patch_size": model.get("patch_size"), "embed_dim": model.get("embed_dim"),
                  "depth": model.get("depth"), "num_heads": model.get("num_heads"),
                  "fusion_layers": fusion.get("layers"), "class_token": model.get("class_token"),
                  "num_branches": len(model["patch_size"]) if model.get("patch_size") else None},
        "data_sizes": ({"num_train": summary.get("data_sizes/num_train"), "num_val": summary.get("data_sizes/num_val")}
                       if summary.get("data_sizes/num_val") is not None else None),  # None: logged before it was
        "params_m": summary.get("params_m"), "gmacs": summary.get("gmacs"),
        "fusion_params_m": summary.get("fusion_params_m"), "fusion_gmacs": summary.get("fusion_gmacs"),
        "final": {"top1": summary.get("final/top1"), "top5": summary.get("final/top5"),
                  "loss": summary.get("val/loss"), "top1_branch": wandb_branch_top1(summary)},
        "best": {"top1": summary.get("best/top1"), "top5": None, "epoch": None, "top1_branch": None},
        "history": wandb_history(run), "provenance": provenance or None,
        "wall_time_s": summary.get("wall_time_s", summary.get("_runtime")),
        "run_dir": getattr(run, "url", None) or run.id,
        "wandb": {"mode": "online", "run_id": run.id, "dir": None}, "started_at": None, "finished_at": None,
        "lost_launches": [],  # launches that died unrecorded are in the run dir's results.json only
        "classes": None, "start": None, "evaluation": None,  # the run dir's results.json only
    }


def wandb_run_to_row(run) -> Dict[str, Any]:
    """A W&B run -> the row ``record_to_row`` gives for its results.json."""
    row = record_to_row(wandb_run_to_record(run))
    # The history is read without train/epoch_images_per_s (wandb_history), so the summary's mean stands in: the
    # same mean over epochs that record_to_row takes from a local history.
    for key in ("images_per_s", "data_wait_frac"):  # the same holds for the data wait
        if dict(run.summary).get(key) is not None:
            row[key] = dict(run.summary)[key]
    return row


def wandb_history(run) -> List[EpochRow]:
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
        return ((not self.sweep or sweep == self.sweep)
                and (not self.group or getattr(run, "group", None) == self.group)
                and (not self.tag or self.tag in (getattr(run, "tags", None) or [])))

    def describe(self, path: str) -> str:
        parts = [f"{name} {value}" for name, value in (("sweep", self.sweep), ("group", self.group),
                                                        ("tag", self.tag)) if value]
        return f"W&B project {path}" + (f" ({', '.join(parts)})" if parts else "")


def wandb_api(timeout: int = 30):
    """``wandb.Api`` when an API key is configured; a missing key fails at once instead of prompting."""
    import wandb  # here, not at import: reading local runs never loads wandb

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
