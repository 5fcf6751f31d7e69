from typing import List, Sequence

import torch
import torch.nn as nn
from timm.layers import Attention, DropPath, Mlp

from .base import BranchSpec, Fusion, FusionOptions, projection, widest
from .registry import register_fusion


class SelfAttentionLayer(nn.Module):
    """``o = y + MSA(LN(y))``: pre-norm self-attention with a residual; an FFN (``o + MLP(LN(o))``) only
    when ``mlp_ratio`` > 0, which the paper's Eq. 2 does not have."""

    def __init__(self, dim: int, num_heads: int, options: FusionOptions, mlp_ratio: float = 0.0):
        super().__init__()
        self.norm = options.norm_layer(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=options.qkv_bias,
                              attn_drop=options.attn_drop, proj_drop=options.proj_drop)
        self.drop_path = DropPath(options.drop_path) if options.drop_path > 0 else nn.Identity()
        self.mlp = None
        if mlp_ratio > 0:
            self.mlp_norm = options.norm_layer(dim)
            self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), act_layer=options.act_layer,
                           drop=options.proj_drop)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens + self.drop_path(self.attn(self.norm(tokens)))
        if self.mlp is not None:
            tokens = tokens + self.drop_path(self.mlp(self.mlp_norm(tokens)))
        return tokens


@register_fusion("all_attn")
class AllAttentionFusion(Fusion):
    """All-attention fusion (paper Eq. 2, Fig. 3a): every token of every branch attends to every other.

        y   = [f^l(x^l) || f^s(x^s)]
        o   = y + MSA(LN(y))
        z^i = g^i(o^i)

    Cost is quadratic in the total number of tokens. The paper does not state the common width of ``y``;
    we use the widest branch's width and head count (its FLOPs then match the paper's). ``layers`` stacks
    that attention step (the paper uses one).

    Options: ``identity_when_equal`` (default off) skips f/g between equal widths; ``mlp_ratio`` (default 0)
    adds an FFN after the attention; ``residual`` (default off, not the paper's) returns ``x^i + g^i(o^i)``.
    The paper's row (Table 6: 27.7M, 7.6 G on CrossViT-S) is reproduced by no design we tried: the default gives
    26.86M / 7.58 G (FLOPs match, params 3% short); an FFN of ratio 1 (CrossViT's third ``mlp_ratio``) gives
    27.74M but 8.11 G; identity f/g gives 25.96M / 7.41 G.
    """

    def __init__(self, branches: Sequence[BranchSpec], options: FusionOptions, layers: int = 1,
                 identity_when_equal: bool = False, mlp_ratio: float = 0.0, residual: bool = False):
        super().__init__(branches, options)
        self.residual = residual
        if layers < 1:
            raise ValueError(f"fusion.layers must be >= 1 for all_attn, got {layers}")
        if mlp_ratio < 0:
            raise ValueError(f"fusion.options.mlp_ratio must be >= 0 for all_attn (0: no FFN), got {mlp_ratio}")
        common = widest(branches)
        self.projs = nn.ModuleList([projection(b.dim, common.dim, options, identity_when_equal) for b in branches])
        self.layers = nn.Sequential(*[SelfAttentionLayer(common.dim, common.num_heads, options, mlp_ratio)
                                      for _ in range(layers)])
        self.revert_projs = nn.ModuleList([projection(common.dim, b.dim, options, identity_when_equal)
                                           for b in branches])

    def forward(self, tokens: List[torch.Tensor]) -> List[torch.Tensor]:
        lengths = [t.shape[1] for t in tokens]
        projected = []
        for i, proj in enumerate(self.projs):
            projected.append(proj(tokens[i]))
        parts = self.layers(torch.cat(projected, dim=1)).split(lengths, dim=1)
        outputs = []
        for i, revert in enumerate(self.revert_projs):
            fused = revert(parts[i])
            outputs.append(tokens[i] + fused if self.residual else fused)
        return outputs
