"""The 3-conv ("dagger") patch embedding: timm's own for the patch sizes the released CrossViT builds (12, 16),
and the same shape for any other multiple of 4 (the CPU proxy's 4-, 8-, 16- and 32-px patches). Early
convolutions make a ViT learn faster and depend less on the seed and the lr (Xiao et al., "Early Convolutions Help
Transformers See Better", NeurIPS 2021); on the multi-scale digits they are what lets a 0.6M-parameter model finish
learning inside a CPU budget, with seeds that agree (docs/training.md#the-cpu-proxy-digits-at-many-scales)."""
from typing import Tuple

import torch.nn as nn
from timm.models.crossvit import PatchEmbed

RELEASED_PATCH_SIZES = (12, 16)


def dagger_strides(patch_size: int) -> Tuple[int, int, int]:
    """A 7x7 conv of stride 4, then the rest of the patch over two 3x3 convs, as the released 12 (4, 3, 1) and
    16 (4, 2, 2): 4 -> (4, 1, 1), 8 -> (4, 2, 1), 32 -> (4, 4, 2)."""
    if patch_size < 4 or patch_size % 4:
        raise ValueError(f"the 3-conv (dagger) patch embedding needs a patch size that is a multiple of 4 (its first "
                         f"conv has stride 4), not {patch_size}: set multi_conv=false or pick such a patch size")
    rest = patch_size // 4
    return (4, rest, 1) if rest <= 3 or rest % 2 else (4, rest // 2, 2)


def _conv(cin: int, cout: int, stride: int) -> nn.Conv2d:
    kernel = max(3, stride)  # a stride past the kernel would skip pixels; padding 1 keeps the grid at size / stride
    return nn.Conv2d(cin, cout, kernel_size=kernel, stride=stride, padding=1)


def build_patch_embed(img_size: int, patch_size: int, in_chans: int, embed_dim: int, multi_conv: bool) -> PatchEmbed:
    """timm's PatchEmbed (its key names: ``proj``, or ``proj.0/2/4`` with the dagger stem), for any patch size."""
    if not multi_conv or patch_size in RELEASED_PATCH_SIZES:
        return PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                          multi_conv=multi_conv)
    _, second, third = dagger_strides(patch_size)
    embed = PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim)
    embed.proj = nn.Sequential(
        nn.Conv2d(in_chans, embed_dim // 4, kernel_size=7, stride=4, padding=3), nn.ReLU(inplace=True),
        _conv(embed_dim // 4, embed_dim // 2, second), nn.ReLU(inplace=True),
        _conv(embed_dim // 2, embed_dim, third))
    return embed
