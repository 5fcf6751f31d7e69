"""How a run names itself: its W&B group (one job's seeds together) and the readable ``arch/*`` keys."""
from typing import Any, Dict, Optional, Sequence

from src.identity import group_hash

from .record import ModelSummary


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
    a short hash of the run's identity without seed and device (``src.identity.group_hash``), so that runs
    differing in anything else (lr, epochs, ...) never share a group (W&B's grouping shows mean and spread over
    seeds)."""
    model, fusion = config["model"], config["fusion"]
    parts = [model["name"].removeprefix("fusionvit_"), fusion["name"], f"p{format_pair(model.get('patch_size'))}",
             f"w{format_pair(model.get('embed_dim'))}", format_depth(model.get("depth"), fusion.get("layers"))]
    if model.get("class_token") is False:
        parts.append("nocls")
    parts.append(config["data"]["name"])
    return "-".join(str(part) for part in parts if part) + "-" + group_hash(config)[:6]

