from typing import List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, use_fused_attn

from .base import BranchSpec, Fusion, FusionOptions, projection, split_cls
from .registry import register_fusion


class CrossAttention(nn.Module):
    """Multi-head attention whose only query is the first token (the CLS): O(N) instead of O(N^2).

    ``fused_attn`` follows timm's switch (``timm.layers.set_fused_attn`` before the model is built, or the
    attribute itself): off, the weights are computed explicitly, so ``timm.utils.AttentionExtract`` reads them
    at ``...fusion.layers.I.J.attn.softmax``, ``[B, heads, 1, 1 + N]`` (the CLS query over [CLS ; patches])."""

    def __init__(self, dim: int, num_heads: int, options: FusionOptions):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"cross-attention width {dim} is not divisible by its {num_heads} heads")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.fused_attn = use_fused_attn()
        self.wq = nn.Linear(dim, dim, bias=options.qkv_bias)
        self.wk = nn.Linear(dim, dim, bias=options.qkv_bias)
        self.wv = nn.Linear(dim, dim, bias=options.qkv_bias)
        self.attn_drop = options.attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(options.proj_drop)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], x.shape[1], self.num_heads, x.shape[2] // self.num_heads).transpose(1, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        query = self._heads(self.wq(tokens[:, :1]))
        key, value = self._heads(self.wk(tokens)), self._heads(self.wv(tokens))
        dropout = self.attn_drop if self.training else 0.0
        if self.fused_attn:
            attended = F.scaled_dot_product_attention(query, key, value, dropout_p=dropout)
        else:
            attn = (query * self.scale) @ key.transpose(-2, -1)
            attn = attn.softmax(dim=-1)
            attended = F.dropout(attn, p=dropout) @ value
        return self.proj_drop(self.proj(attended.transpose(1, 2).flatten(2)))


class CrossAttentionLayer(nn.Module):
    """``cls' = cls + CA(LN([cls ; patches]))``; no FFN (paper Eq. 6-7). With no patches, CA attends over
    the CLS alone (the released code's later layers)."""

    def __init__(self, dim: int, num_heads: int, options: FusionOptions):
        super().__init__()
        self.norm = options.norm_layer(dim)
        self.attn = CrossAttention(dim, num_heads, options)
        self.drop_path = DropPath(options.drop_path) if options.drop_path > 0 else nn.Identity()

    def forward(self, cls_token: torch.Tensor, patch_tokens: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([cls_token, patch_tokens], dim=1)
        return cls_token + self.drop_path(self.attn(self.norm(tokens)))


STACKINGS = ("released", "reattend")


@register_fusion("cross")
class CrossAttentionFusion(Fusion):
    """Cross-attention fusion (paper Sec. 3.3, Eq. 5-7, Fig. 3d), CrossViT's own.

    For branch i with partner j (the next branch, cyclically):

        x'^i  = [ f^i(x^i_cls) || x^j_patch ]
        y^i   = f^i(x^i_cls) + CA(LN(x'^i))      CA: the CLS is the only query; linear in tokens
        z^i   = [ g^i(y^i) || x^i_patch ]

    ``f^i`` projects to branch j's width, the attention uses branch j's head count, and the branch's
    own patch tokens pass through untouched.

    ``layers`` (L) stacks CA steps. ``stacking="released"`` (default) is the released code and timm: a layer
    returns the CLS token alone, so layers after the first attend over that one token (logits equal timm's
    ``CrossVit`` with depth ``(N, M, L)``; the paper's L = 2 row, 5.6 G like L = 1, measured this).
    ``"reattend"`` feeds every layer ``[current CLS ; x^j_patch]``, as the paper's text reads (5.88 G on
    CrossViT-S with L = 2); the paper never compared the two. ``identity_when_equal`` (default on) makes f/g
    the identity between equal widths: the paper's S-width-384 row (Table 7 B, 31.4M) counts that; no
    released model has equal widths, so they are unaffected.
    """

    def __init__(self, branches: Sequence[BranchSpec], options: FusionOptions, layers: int = 1,
                 identity_when_equal: bool = True, stacking: str = "released"):
        super().__init__(branches, options)
        if layers < 1:
            raise ValueError(f"fusion.layers must be >= 1 for cross, got {layers}")
        if stacking not in STACKINGS:
            raise ValueError(f"fusion.options.stacking={stacking!r} for cross: pick one of {', '.join(STACKINGS)}")
        self.stacking = stacking
        partners = [branches[(i + 1) % len(branches)] for i in range(len(branches))]
        self.projs = nn.ModuleList([projection(b.dim, p.dim, options, identity_when_equal)
                                    for b, p in zip(branches, partners)])
        self.layers = nn.ModuleList([
            nn.ModuleList([CrossAttentionLayer(p.dim, p.num_heads, options) for _ in range(layers)])
            for p in partners])
        self.revert_projs = nn.ModuleList([projection(p.dim, b.dim, options, identity_when_equal)
                                           for b, p in zip(branches, partners)])

    def forward(self, tokens: List[torch.Tensor]) -> List[torch.Tensor]:
        outputs = []
        for i, (proj, layers, revert) in enumerate(zip(self.projs, self.layers, self.revert_projs)):
            own_cls, own_patches = split_cls(tokens[i])
            partner_patches = tokens[(i + 1) % len(tokens)][:, 1:]
            cls_token = proj(own_cls)
            for depth, layer in enumerate(layers):
                context = partner_patches if depth == 0 or self.stacking == "reattend" else partner_patches[:, :0]
                cls_token = layer(cls_token, context)
            outputs.append(torch.cat([revert(cls_token), own_patches], dim=1))
        return outputs
