"""Checks that turn a bad architecture into an error naming the value and the fix, before any work."""
from typing import List, Optional, Sequence, Tuple

import torch
from timm.layers import register_notrace_function


def _divisors(n: int) -> List[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def normalise_depth(depth: Sequence[Sequence[int]], fusion_layers: Optional[int]
                    ) -> Tuple[List[Tuple[int, int, int]], Optional[int]]:
    """Returns ``[(N, M, L_raw), ...]`` and the explicit fusion-layer count (None: take it from L_raw)."""
    encoders = []
    for k, entry in enumerate(depth):
        entry = tuple(int(v) for v in entry)
        if len(entry) == 2:
            entry = entry + (0,)
        if len(entry) != 3 or min(entry) < 0 or max(entry[:2]) < 1:
            raise ValueError(f"depth[{k}]={list(entry)} is not (N, M) or (N, M, L) with N, M >= 0, one of "
                             f"them >= 1 and L >= 0: write e.g. depth=[[1,4,0],[1,4,0],[1,4,0]]")
        encoders.append(entry)
    if not encoders:
        raise ValueError("depth is empty: give at least one multi-scale encoder, e.g. depth=[[1,4,0]]")
    if fusion_layers is not None and int(fusion_layers) < 1:
        raise ValueError(f"fusion_layers={fusion_layers} must be >= 1 (the number of stacked fusion layers)")
    return encoders, None if fusion_layers is None else int(fusion_layers)


def check_architecture(img_size: int, scaled_sizes: Sequence[int], patch_size: Sequence[int],
                       embed_dim: Sequence[int], num_heads: Sequence[int], mlp_ratio: Sequence[float],
                       depth: Sequence[Sequence[int]], multi_conv: bool, dagger_patch_sizes) -> None:
    branches = len(patch_size)
    for name, values, need in (("img_scale", scaled_sizes, branches), ("embed_dim", embed_dim, branches),
                               ("num_heads", num_heads, branches)):
        if len(values) != need:
            raise ValueError(f"{name} has {len(values)} entries but patch_size has {branches}: "
                             f"give one per branch")
    if len(mlp_ratio) < branches:
        raise ValueError(f"mlp_ratio has {len(mlp_ratio)} entries: give one per branch (CrossViT adds a "
                         f"third, unused, for the fusion)")
    if img_size < 1:
        raise ValueError(f"img_size={img_size} must be positive")
    for i, (size, patch) in enumerate(zip(scaled_sizes, patch_size)):
        which = f"branch {i}" + (f" (image scaled to {size})" if size != img_size else "")
        if patch < 1 or size % patch:
            fits = ", ".join(str(d) for d in _divisors(size))
            raise ValueError(f"patch size {patch} does not divide image size {size} of {which}: pick a patch "
                             f"size from {fits} or change img_size (data.image_size / model.img_size)")
        if multi_conv and patch not in dagger_patch_sizes:
            raise ValueError(f"the 3-conv (dagger) patch embedding exists only for patch sizes "
                             f"{dagger_patch_sizes}, not {patch}: set multi_conv=false or pick one of those")
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
