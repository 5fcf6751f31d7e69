"""Checks that turn a bad architecture into an error naming the value and the fix, before any work."""
from typing import List, Optional, Sequence, Tuple

import torch
from timm.layers import register_notrace_function

from .conv_stem import dagger_strides
from .fusion import fusion_class, fusion_names


def _divisors(n: int) -> List[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def depth_format(branches: int) -> str:
    """How one encoder's depth entry reads for this many branches: CrossViT's ``(N, M, L)`` for two."""
    blocks = "N, M" if branches == 2 else ", ".join(f"d_{i}" for i in range(branches))
    return f"({blocks}) or ({blocks}, L)"


def normalise_depth(depth: Sequence[Sequence[int]], fusion_layers: Optional[int], branches: int = 2
                    ) -> Tuple[List[Tuple[int, ...]], Optional[int]]:
    """Returns ``[(d_0, ..., d_{n-1}, L_raw), ...]`` (the released code's ``[d_0, ..., d_{n-1}, L]`` per encoder;
    a missing L is 0) and the explicit fusion-layer count (None: take it from L_raw)."""
    encoders = []
    for k, entry in enumerate(depth):
        entry = tuple(int(v) for v in entry)
        if len(entry) == branches:
            entry = entry + (0,)
        if len(entry) != branches + 1 or min(entry) < 0 or max(entry[:-1]) < 1:
            example = [[1] * (branches - 1) + [4, 0]] * 3
            raise ValueError(f"depth[{k}]={list(entry)} is not {depth_format(branches)} for {branches} branches: "
                             f"give each branch's block count (>= 0, one of them >= 1), then L >= 0, e.g. "
                             f"depth={str(example).replace(' ', '')}")
        encoders.append(entry)
    if not encoders:
        raise ValueError("depth is empty: give at least one multi-scale encoder, e.g. depth=[[1,4,0]]")
    if fusion_layers is not None and int(fusion_layers) < 1:
        raise ValueError(f"fusion_layers={fusion_layers} must be >= 1 (the number of stacked fusion layers)")
    return encoders, None if fusion_layers is None else int(fusion_layers)


def check_branch_counts(patch_size: Sequence[int], img_scale: Sequence[float], embed_dim: Sequence[int],
                        num_heads: Sequence[int], mlp_ratio: Sequence[float]) -> int:
    """Every per-branch list has one entry per branch (``patch_size`` sets the count); ``mlp_ratio`` may add one
    for the fusion, as CrossViT's ``(S, L, fusion)`` does. Returns the number of branches."""
    branches = len(patch_size)
    if branches < 1:
        raise ValueError("model.patch_size is empty: give one patch size per branch (e.g. patch_size=[4,8], or "
                         "patch_size=[16] for a single-branch ViT)")
    for name, values in (("img_scale", img_scale), ("embed_dim", embed_dim), ("num_heads", num_heads)):
        if len(values) != branches:
            raise ValueError(f"model.{name} has {len(values)} entries but model.patch_size has {branches}: "
                             f"give one per branch")
    if len(mlp_ratio) not in (branches, branches + 1):
        raise ValueError(f"model.mlp_ratio has {len(mlp_ratio)} entries but model.patch_size has {branches}: give "
                         f"one per branch, optionally followed by the fusion's (CrossViT's last entry, unused by "
                         f"its cross-attention)")
    return branches


def check_fusion_takes(fusion: str, patch_size: Sequence[int]) -> None:
    """A fusion step needs branches to fuse: on one branch only a strategy declared for it (``none``) builds."""
    branches = len(patch_size)
    needed = fusion_class(fusion).min_branches
    if branches < needed:
        fits = ", ".join(f"fusion={name}" for name in fusion_names() if fusion_class(name).min_branches <= branches)
        raise ValueError(f"fusion={fusion} needs at least {needed} branches but model.patch_size={list(patch_size)} "
                         f"gives {branches}: a single-branch model is a plain ViT, build it with {fits} (or give "
                         f"{needed} patch sizes, one per branch)")


def check_architecture(img_size: int, scaled_sizes: Sequence[int], patch_size: Sequence[int],
                       embed_dim: Sequence[int], num_heads: Sequence[int], multi_conv: bool) -> None:
    if img_size < 1:
        raise ValueError(f"img_size={img_size} must be positive")
    for i, (size, patch) in enumerate(zip(scaled_sizes, patch_size)):
        which = f"branch {i}" + (f" (image scaled to {size})" if size != img_size else "")
        if patch < 1 or size % patch:
            fits = ", ".join(str(d) for d in _divisors(size))
            raise ValueError(f"patch size {patch} does not divide image size {size} of {which}: pick a patch "
                             f"size from {fits} or change img_size (data.image_size / model.img_size)")
        if multi_conv:
            dagger_strides(patch)
    for i, (dim, heads) in enumerate(zip(embed_dim, num_heads)):
        if heads < 1 or dim % heads:
            fits = ", ".join(str(h) for h in _divisors(dim) if h <= 32)
            raise ValueError(f"width {dim} of branch {i} is not divisible by its {heads} heads: pick num_heads "
                             f"from {fits} or change embed_dim")


GLOBAL_POOLS = ("token", "avg")


def check_global_pool(global_pool: str) -> str:
    if global_pool not in GLOBAL_POOLS:
        raise ValueError(f"global_pool={global_pool!r}: pick one of 'token' (each branch's CLS) or 'avg' (its mean "
                         f"patch token)")
    return global_pool


@register_notrace_function  # a leaf for FX: its branches depend on the input's shape
def check_input_size(images: torch.Tensor, img_size: int) -> None:
    if images.ndim != 4 or images.shape[-2] != img_size or images.shape[-1] != img_size:
        raise ValueError(f"input of shape {list(images.shape)} does not match the model: expected [batch, channels, "
                         f"{img_size}, {img_size}]; resize the images or build the model with "
                         f"img_size={images.shape[-1]}")
