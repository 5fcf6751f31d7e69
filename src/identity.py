"""Which recorded runs are the same job: a run's identity, a versioned function of what changes its numbers.

Identity version 2 is the sha256 of the resolved config less three kinds of entry, each marked where the key is
declared (``src.config.setting``):
- run-only keys (how to run: ``train.force``, ``train.threads``, the ``logger`` group, ...);
- nulls: a null and a missing key mean the same everywhere in the schema;
- a key at its ``absent_means`` value: what runs recorded before the key existed trained with.
So a new key can default to what it means (``train.grad_accum_steps: 1``) and every older run dir stays the same job.

Checkpoints carry ``identity(config)``; a checkpoint from before version 2 carries the version-1 hash (the config
without the ``train`` run-only keys of its day and without nulls), which ``checkpoint_matches`` still accepts.
``config_hash`` (every key, the record's ``config_hash``) tells copies of one run apart from runs of one job.
"""
import hashlib
import json
from typing import Any, Dict, Optional

from src.config import FIELDS, NOT_RECORDED

VERSION = 2
# the W&B group holds a job's seeds on every device: its name hashes the identity without these
NOT_GROUPED = ("seed", "train.device")
# version 1's run-only keys, all under train
V1_RUN_ONLY = ("force", "resume", "threads", "progress", "save_checkpoints", "ckpt_every_steps", "on_busy")


def config_hash(resolved_config: Dict[str, Any]) -> str:
    """sha256 of the resolved config, independent of key order: equal configs, equal hashes."""
    return hashlib.sha256(json.dumps(resolved_config, sort_keys=True, default=str).encode()).hexdigest()


def canonical(value: Any, prefix: str = "", leave_out: tuple = (), run_only_out: bool = True) -> Any:
    """The config as its identity sees it (the module's docstring); ``run_only_out=False`` keeps the run-only keys
    (what version 1 did)."""
    if not isinstance(value, dict):
        return value
    kept = {}
    for key, item in value.items():
        dotted = prefix + key
        field = FIELDS.get(dotted)
        meta = field.metadata if field is not None else {}
        if item is None or dotted in leave_out or (run_only_out and meta.get("run_only")):
            continue
        if meta.get("absent_means", NOT_RECORDED) is not NOT_RECORDED and item == meta["absent_means"]:
            continue
        kept[key] = canonical(item, dotted + ".", leave_out, run_only_out)
    return kept


def identity(config: Dict[str, Any]) -> str:
    """``v2:`` and the hash: equal for two configs that train the same run."""
    return f"v{VERSION}:{config_hash(canonical(config))}"


def same_job(config: Dict[str, Any], other: Dict[str, Any]) -> bool:
    return identity(config) == identity(other)


def group_hash(config: Dict[str, Any]) -> str:
    """The identity without the seed and the device: one job's seeds form one W&B group."""
    return config_hash(canonical(config, leave_out=NOT_GROUPED))


def checkpoint_matches(stored: Optional[str], config: Dict[str, Any]) -> bool:
    """Whether a checkpoint's ``config_hash`` belongs to ``config``; None (a checkpoint without one) does."""
    if stored is None or stored == identity(config):
        return True
    return not stored.startswith("v") and stored == version_1(config)


def version_1(config: Dict[str, Any]) -> str:
    """The identity checkpoints carried before version 2, of ``config`` as those runs recorded it (a key at its
    ``absent_means`` was null or missing then): only ``train``'s run-only keys of the day left out."""
    recorded = canonical(config, run_only_out=False)
    recorded["train"] = {k: v for k, v in recorded.get("train", {}).items() if k not in V1_RUN_ONLY}
    return config_hash(recorded)
