"""Weights of timm's ``crossvit_*`` models or of the official CrossViT release, in our key layout."""
import re
from pathlib import Path
from typing import Dict, Mapping, Union

import torch

_TIMM_RULES = [
    (re.compile(r"^(cls_token|pos_embed)_(\d+)$"), r"\1.\2"),  # timm flattens the official ParameterLists
    (re.compile(r"^blocks\.(\d+)\.blocks\.(\d+)\."), r"encoders.\1.branches.\2."),
    (re.compile(r"^blocks\.(\d+)\.(projs|revert_projs)\."), r"encoders.\1.fusion.\2."),
    # with L = 0 the official code stores one cross-attention block, not a Sequential of them
    (re.compile(r"^blocks\.(\d+)\.fusion\.(\d+)\.(norm1|attn)\."), r"encoders.\1.fusion.layers.\2.0.\3."),
    (re.compile(r"^blocks\.(\d+)\.fusion\.(\d+)\.(\d+)\."), r"encoders.\1.fusion.layers.\2.\3."),
]


def _rename(key: str) -> str:
    for pattern, replacement in _TIMM_RULES:
        key, hits = pattern.subn(replacement, key)
        if hits:
            break
    return re.sub(r"(encoders\.\d+\.fusion\.layers\.\d+\.\d+\.)norm1\.", r"\1norm.", key)


def convert_crossvit_state_dict(
        source: Union[Mapping[str, torch.Tensor], str, Path]) -> Dict[str, torch.Tensor]:
    """Maps a timm ``crossvit_*`` state dict, or an official checkpoint (a file path or its loaded dict,
    with or without the ``{"model": ...}`` wrapper), to ``FusionViT(fusion="cross")`` keys."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no CrossViT checkpoint at {path}: give the path of a .pth file")
        source = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("model", "state_dict", "model_ema"):
        if wrapper in source and isinstance(source[wrapper], Mapping):
            source = source[wrapper]
            break
    converted = {}
    for key, value in source.items():
        key = key[len("module."):] if key.startswith("module.") else key  # saved from DDP
        converted[_rename(key)] = value
    return converted
