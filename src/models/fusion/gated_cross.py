from typing import List, Sequence

import torch
import torch.nn as nn

from .base import BranchSpec, Fusion, FusionOptions, split_cls
from .cross import CrossAttentionFusion
from .registry import register_fusion


class TanhGate(nn.Module):
    """``tanh(alpha) * x`` with one ``alpha`` per channel, zero at init: the gate starts closed and, as
    tanh'(0) = 1, ``alpha`` gets a gradient from the first step."""

    def __init__(self, dim: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.alpha) * x


@register_fusion("gated_cross")
class GatedCrossAttentionFusion(Fusion):
    """Gated cross-attention: CrossViT's cross-attention (``cross``, paper Sec. 3.3, Eq. 5-7) added to each
    branch's own CLS through a tanh gate that starts closed, as in Flamingo's gated cross-attention
    (Alayrac et al. 2022, arXiv 2204.14198, GATED XATTN-DENSE). Not in the CrossViT paper.

    For branch i with partner j (``cross``'s pairing), with ``cross``'s symbols:

        y^i        = f^i(x^i_cls) + CA(LN([ f^i(x^i_cls) || x^j_patch ]))     cross's Eq. 5-6
        x'^i_cls   = x^i_cls + tanh(alpha^i) * g^i(y^i)                       alpha^i in R^{C_i}, zero at init
        z^i        = [ x'^i_cls || x^i_patch ]

    At init tanh(0) = 0, so the step is ``none`` fusion, and d x'^i_cls / d alpha^i = g^i(y^i) != 0: the gate opens
    as far as fusing helps; the cross-attention weights get no gradient until it does. Ours, beyond Flamingo:
    one alpha per channel of the branch's own width (Flamingo: one scalar per layer), the gate around the
    whole of ``cross`` (f, CA, g) rather than around CA alone, and the sum with the branch's own CLS, so a
    fully open gate is not ``cross`` (which replaces the CLS by g^i(y^i)). The options are ``cross``'s
    (``partners`` too); the gate has none. The cross-attention is a ``cross`` module held as ``self.cross``.
    """

    def __init__(self, branches: Sequence[BranchSpec], options: FusionOptions, layers: int = 1,
                 identity_when_equal: bool = True, stacking: str = "released", partners: str = "next"):
        super().__init__(branches, options)
        self.cross = CrossAttentionFusion(branches, options, layers=layers, identity_when_equal=identity_when_equal,
                                          stacking=stacking, partners=partners)
        self.gates = nn.ModuleList([TanhGate(branch.dim) for branch in branches])

    def forward(self, tokens: List[torch.Tensor]) -> List[torch.Tensor]:
        fused = self.cross(tokens)
        outputs = []
        for i, gate in enumerate(self.gates):
            own_cls, own_patches = split_cls(tokens[i])
            outputs.append(torch.cat([own_cls + gate(fused[i][:, :1]), own_patches], dim=1))
        return outputs
