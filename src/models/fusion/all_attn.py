from typing import List, Sequence

import torch
import torch.nn as nn
from timm.layers import Attention, DropPath

from .base import BranchSpec, Fusion, FusionOptions, projection, widest
from .registry import register_fusion


class SelfAttentionLayer(nn.Module):
    """``o = y + MSA(LN(y))``: pre-norm self-attention with a residual and no FFN."""

    def __init__(self, dim: int, num_heads: int, options: FusionOptions):
        super().__init__()
        self.norm = options.norm_layer(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=options.qkv_bias,
                              attn_drop=options.attn_drop, proj_drop=options.proj_drop)
        self.drop_path = DropPath(options.drop_path) if options.drop_path > 0 else nn.Identity()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens + self.drop_path(self.attn(self.norm(tokens)))


@register_fusion("all_attn")
class AllAttentionFusion(Fusion):
    """All-attention fusion (paper Eq. 2, Fig. 3a): every token of every branch attends to every other.

        y   = [f^l(x^l) || f^s(x^s)]
        o   = y + MSA(LN(y))
        z^i = g^i(o^i)

    Cost is quadratic in the total number of tokens. The paper does not state the common width of ``y``;
    we use the widest branch's width and head count (its FLOPs then match the paper's). ``layers`` stacks
    that attention step (the paper uses one).
    """

    def __init__(self, branches: Sequence[BranchSpec], options: FusionOptions, layers: int = 1):
        super().__init__(branches, options)
        if layers < 1:
            raise ValueError(f"fusion.layers must be >= 1 for all_attn, got {layers}")
        common = widest(branches)
        self.projs = nn.ModuleList([projection(b.dim, common.dim, options) for b in branches])
        self.layers = nn.Sequential(*[SelfAttentionLayer(common.dim, common.num_heads, options)
                                      for _ in range(layers)])
        self.revert_projs = nn.ModuleList([projection(common.dim, b.dim, options) for b in branches])

    def forward(self, tokens: List[torch.Tensor]) -> List[torch.Tensor]:
        lengths = [t.shape[1] for t in tokens]
        joint = torch.cat([proj(t) for proj, t in zip(self.projs, tokens)], dim=1)
        joint = self.layers(joint)
        return [revert(part) for revert, part in zip(self.revert_projs, joint.split(lengths, dim=1))]
