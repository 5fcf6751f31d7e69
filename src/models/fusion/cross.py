from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, use_fused_attn

from .base import BranchSpec, Fusion, FusionOptions, projection
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
PARTNERS = ("next", "all")


def partner_pairs(num_branches: int, partners: str) -> List[Tuple[int, int]]:
    """``(i, j)``: branch i's CLS attends branch j's patches. ``next``: j = i + 1 mod n (one per branch, the
    released rule); ``all``: every j != i, in the cyclic order i + 1, i + 2, ... (so the first is ``next``'s)."""
    per_branch = 1 if partners == "next" else num_branches - 1
    return [(i, (i + k) % num_branches) for i in range(num_branches) for k in range(1, per_branch + 1)]


@register_fusion("cross")
class CrossAttentionFusion(Fusion):
    """Cross-attention fusion (paper Sec. 3.3, Eq. 5-7, Fig. 3d), CrossViT's own.

    For branch i with partner j (``partners="next"``, default: the next branch, cyclically, as in the released
    code for any number of branches):

        x'^i  = [ f^i(x^i_cls) || x^j_patch ]
        y^i   = f^i(x^i_cls) + CA(LN(x'^i))      CA: the CLS is the only query; linear in tokens
        z^i   = [ g^i(y^i) || x^i_patch ]

    ``f^i`` projects to branch j's width, the attention uses branch j's head count, and the branch's
    own patch tokens pass through untouched.

    ``partners="all"`` (ours; the paper and the released code have only two branches or the cyclic rule) lets
    each CLS read every other branch, one CA per partner at the partner's width and heads, averaged back at
    branch i's width:

        y^{ij} = f^{ij}(x^i_cls) + CA^{ij}(LN([ f^{ij}(x^i_cls) || x^j_patch ]))      for every j != i
        z^i    = [ 1/(n-1) sum_{j != i} g^{ij}(y^{ij}) || x^i_patch ]

    A separate softmax per partner keeps a branch with many tokens from crowding out one with few, and only
    the CLS is projected, so the cost stays linear in tokens. With two branches it is ``next``, parameter names
    included. Parameters are flat over the pairs ``(i, j)`` in ``partner_pairs`` order: ``projs.p``,
    ``layers.p``, ``revert_projs.p`` for pair p (for ``next``, p = i, the converted released layout).

    ``layers`` (L) stacks CA steps. ``stacking="released"`` (default) is the released code and timm: a layer
    returns the CLS token alone, so layers after the first attend over that one token (logits equal timm's
    ``CrossVit`` with depth ``(N, M, L)``; the paper's L = 2 row, 5.6 G like L = 1, measured this).
    ``"reattend"`` feeds every layer ``[current CLS ; x^j_patch]``, as the paper's text reads (5.88 G on
    CrossViT-S with L = 2); the paper never compared the two. ``identity_when_equal`` (default on) makes f/g
    the identity between equal widths: the paper's S-width-384 row (Table 7 B, 31.4M) counts that; no
    released model has equal widths, so they are unaffected.
    """

    def __init__(self, branches: Sequence[BranchSpec], options: FusionOptions, layers: int = 1,
                 identity_when_equal: bool = True, stacking: str = "released", partners: str = "next"):
        super().__init__(branches, options)
        if layers < 1:
            raise ValueError(f"fusion.layers must be >= 1 for cross, got {layers}")
        if stacking not in STACKINGS:
            raise ValueError(f"fusion.options.stacking={stacking!r} for cross: pick one of {', '.join(STACKINGS)}")
        if partners not in PARTNERS:
            raise ValueError(f"fusion.options.partners={partners!r} for cross: pick one of {', '.join(PARTNERS)}")
        self.stacking = stacking
        self.partners = partners
        pairs = partner_pairs(len(branches), partners)
        self.owner_of_pair: List[int] = [i for i, _ in pairs]
        self.partner_of_pair: List[int] = [j for _, j in pairs]
        self.pairs_per_branch = len(pairs) // len(branches)
        self.projs = nn.ModuleList([projection(branches[i].dim, branches[j].dim, options, identity_when_equal)
                                    for i, j in pairs])
        self.layers = nn.ModuleList([
            nn.ModuleList([CrossAttentionLayer(branches[j].dim, branches[j].num_heads, options)
                           for _ in range(layers)])
            for _, j in pairs])
        self.revert_projs = nn.ModuleList([projection(branches[j].dim, branches[i].dim, options, identity_when_equal)
                                           for i, j in pairs])

    def forward(self, tokens: List[torch.Tensor]) -> List[torch.Tensor]:
        reverted = []  # g^{ij}(y^{ij}) per pair, grouped by owner i
        for p, (proj, layers, revert) in enumerate(zip(self.projs, self.layers, self.revert_projs)):
            own_cls = tokens[self.owner_of_pair[p]][:, :1]
            partner_patches = tokens[self.partner_of_pair[p]][:, 1:]
            cls_token = proj(own_cls)
            for depth, layer in enumerate(layers):
                context = partner_patches if depth == 0 or self.stacking == "reattend" else partner_patches[:, :0]
                cls_token = layer(cls_token, context)
            reverted.append(revert(cls_token))
        outputs = []
        per_branch = self.pairs_per_branch
        for i in range(len(tokens)):
            mine = reverted[i * per_branch:(i + 1) * per_branch]
            fused_cls = mine[0] if per_branch == 1 else torch.stack(mine).mean(0)
            outputs.append(torch.cat([fused_cls, tokens[i][:, 1:]], dim=1))
        return outputs
