"""How a run names itself to W&B and to the analysis: readable architecture strings, the group (the config
without its seed, so that W&B's grouping shows mean and spread over seeds), job type and tags (the preset)."""
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .checkpoint import NON_IDENTITY_KEYS
from .results import config_hash

# Keys that never split a group: the seed, where the logs go, and how to run (not what to train), the device too.
UNGROUPED_TRAIN_KEYS = NON_IDENTITY_KEYS + ("device",)


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


def arch_keys(model: Dict[str, Any]) -> Dict[str, Any]:
    """results.json's ``model`` as readable ``arch/...`` W&B config keys (sweep-locked ``model.*`` keys keep the
    sweep's raw strings; these are always what was built)."""
    return {"arch/patch_size": format_pair(model.get("patch_size")),
            "arch/embed_dim": format_pair(model.get("embed_dim")),
            "arch/depth": format_depth(model.get("depth"), model.get("fusion_layers")),
            "arch/K": len(model["depth"]) if model.get("depth") else None, "arch/img_size": model.get("img_size"),
            "arch/class_token": model.get("class_token"), "arch/fusion": model.get("fusion")}


def group_name(config: Dict[str, Any]) -> str:
    """``micro_32-cross-p4/8-w48/96-2x(1,2,1)-digits-1a2b3c``: model, fusion, patches, widths, depth, data, and
    a short hash of the config without seed, logger and run-only keys, so that runs differing in anything
    else (lr, epochs, ...) never share a group."""
    model, fusion = config["model"], config["fusion"]
    parts = [model["name"].removeprefix("fusionvit_"), fusion["name"], f"p{format_pair(model.get('patch_size'))}",
             f"w{format_pair(model.get('embed_dim'))}", format_depth(model.get("depth"), fusion.get("layers"))]
    if model.get("class_token") is False:
        parts.append("nocls")
    parts.append(config["data"]["name"])
    return "-".join(str(part) for part in parts if part) + "-" + grouped_hash(config)[:6]


def grouped_hash(config: Dict[str, Any]) -> str:
    train = {k: v for k, v in config.get("train", {}).items() if k not in UNGROUPED_TRAIN_KEYS}
    kept = {k: v for k, v in config.items() if k not in ("seed", "logger", "train")}
    return config_hash({**kept, "train": train})


def preset_tags(logger_cfg, choices: Dict[str, Any]) -> Tuple[Optional[str], List[str]]:
    """(job type, tags): the ablation preset (``logger.job_type``, set by the W&B sweep files, else the
    ``+experiment`` choice), added to ``logger.tags``."""
    preset = logger_cfg.get("job_type") or choices.get("experiment")
    tags = list(logger_cfg.get("tags") or [])
    if preset and preset not in tags:
        tags.append(preset)
    return preset, tags
