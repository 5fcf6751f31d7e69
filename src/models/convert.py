"""Weights of timm's ``crossvit_*`` models or of the official CrossViT release, in our key layout; and of a
single-scale ViT (timm's ``vit_*`` / ``deit_*``) as one branch of ours."""
import re
from pathlib import Path
from typing import Dict, Mapping, Sequence, Union

import torch

_TIMM_RULES = [
    (re.compile(r"^(cls_token|pos_embed)_(\d+)$"), r"\1.\2"),  # timm flattens the official ParameterLists
    (re.compile(r"^blocks\.(\d+)\.blocks\.(\d+)\."), r"encoders.\1.branches.\2."),
    (re.compile(r"^blocks\.(\d+)\.(projs|revert_projs)\."), r"encoders.\1.fusion.\2."),
    # with L = 0 the official code stores one cross-attention block, not a Sequential of them
    (re.compile(r"^blocks\.(\d+)\.fusion\.(\d+)\.(norm1|attn)\."), r"encoders.\1.fusion.layers.\2.0.\3."),
    (re.compile(r"^blocks\.(\d+)\.fusion\.(\d+)\.(\d+)\."), r"encoders.\1.fusion.layers.\2.\3."),
]
# A ViT's own parts, each the same module as a FusionViT branch's (timm's PatchEmbed conv, Block, LayerNorm, Linear).
_VIT_PARTS = re.compile(r"^(cls_token|pos_embed|patch_embed\.proj\.(weight|bias)|norm\.(weight|bias)|"
                        r"head\.(weight|bias)|blocks\.(\d+)\..+)$")


def _rename(key: str) -> str:
    for pattern, replacement in _TIMM_RULES:
        key, hits = pattern.subn(replacement, key)
        if hits:
            break
    return re.sub(r"(encoders\.\d+\.fusion\.layers\.\d+\.\d+\.)norm1\.", r"\1norm.", key)


def read_state_dict(source: Union[Mapping[str, torch.Tensor], str, Path], kind: str) -> Dict[str, torch.Tensor]:
    """A checkpoint's tensors: a file path or a loaded dict, with or without a ``{"model": ...}``-style wrapper,
    without DDP's ``module.`` prefix."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no {kind} checkpoint at {path}: give the path of a .pth file")
        source = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("model", "state_dict", "model_ema"):
        if wrapper in source and isinstance(source[wrapper], Mapping):
            source = source[wrapper]
            break
    return {(key[len("module."):] if key.startswith("module.") else key): value for key, value in source.items()}


def convert_crossvit_state_dict(
        source: Union[Mapping[str, torch.Tensor], str, Path]) -> Dict[str, torch.Tensor]:
    """Maps a timm ``crossvit_*`` state dict, or an official checkpoint (a file path or its loaded dict,
    with or without the ``{"model": ...}`` wrapper), to ``FusionViT(fusion="cross")`` keys."""
    return {_rename(key): value for key, value in read_state_dict(source, "CrossViT").items()}


def is_vit_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """A single-scale ViT's keys (``patch_embed.proj``, ``blocks.N.norm1``), not a multi-branch model's."""
    return "patch_embed.proj.weight" in state_dict or "blocks.0.norm1.weight" in state_dict


def convert_vit_state_dict(source: Union[Mapping[str, torch.Tensor], str, Path], blocks: Sequence[str],
                           branch: int = 0) -> Dict[str, torch.Tensor]:
    """A timm ViT / DeiT state dict (or file) as branch ``branch`` of a FusionViT: ``cls_token`` ->
    ``cls_token.B``, ``pos_embed`` -> ``pos_embed.B``, ``patch_embed.proj`` -> ``patch_embed.B.proj``,
    ``norm`` / ``head`` -> ``norm.B`` / ``head.B``, and ``blocks.N`` -> ``blocks[N]``: the branch's blocks in
    order (``encoders.K.branches.B.I`` over the encoders, see ``src.models.pretrained.branch_blocks``)."""
    state_dict = read_state_dict(source, "ViT")
    unknown = [key for key in state_dict if not _VIT_PARTS.match(key)]
    if unknown:
        raise ValueError(f"{unknown[0]} of the ViT checkpoint has no place in a FusionViT branch, which takes "
                         f"cls_token, pos_embed, patch_embed.proj, blocks.N, norm and head (a distilled DeiT's "
                         f"dist_token / head_dist, or a ViT with registers or fc_norm, does not fit)")
    depth = 1 + max([int(key.split(".")[1]) for key in state_dict if key.startswith("blocks.")], default=-1)
    if depth != len(blocks):
        raise ValueError(f"the ViT checkpoint has {depth} blocks but branch {branch} has {len(blocks)} over its "
                         f"encoders: pick a branch (or a model depth) with {depth}")
    converted = {}
    for key, value in state_dict.items():
        if key.startswith("blocks."):
            _, index, rest = key.split(".", 2)
            converted[f"{blocks[int(index)]}.{rest}"] = value
        else:
            part, *rest = key.split(".", 2) if key.startswith("patch_embed.") else key.split(".", 1)
            converted[".".join([part, str(branch), *rest])] = value
    return converted
