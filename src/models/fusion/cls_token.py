from typing import List, Sequence

import torch
import torch.nn as nn

from .base import BranchSpec, Fusion, FusionOptions, projection, split_cls, widest
from .registry import register_fusion


@register_fusion("cls_token")
class ClassTokenFusion(Fusion):
    """Class-token fusion (paper Eq. 3, Fig. 3b): the CLS tokens are summed, the patch tokens are left alone.

        z^i = [ g^i( sum_j f^j(x^j_cls) ) || x^i_patch ]

    ``f^j`` projects branch j to a common width (the widest branch's; the paper is silent) and ``g^i``
    back-projects. As in the equation there is no residual around the sum. ``identity_when_equal`` (default
    on) makes f/g the identity for the branch already at the common width: the paper's 24.2M for this row
    (Table 6, CrossViT-S) counts that; always projecting, as the released code does, gives 25.08M.
    ``residual`` (default off, not the paper's) adds each branch's own tokens back: ``x^i + g^i(...)``, an
    ablation of whether the missing residual is what makes a strategy hard to train.
    """

    def __init__(self, branches: Sequence[BranchSpec], options: FusionOptions, identity_when_equal: bool = True,
                 residual: bool = False):
        super().__init__(branches, options)
        self.residual = residual
        common = widest(branches)
        self.projs = nn.ModuleList([projection(b.dim, common.dim, options, identity_when_equal) for b in branches])
        self.revert_projs = nn.ModuleList([projection(common.dim, b.dim, options, identity_when_equal)
                                           for b in branches])

    def sum_projected_cls(self, tokens: List[torch.Tensor]) -> torch.Tensor:
        """``sum_j f^j(x^j_cls)`` at the common width, before any ``g^i``."""
        projected = []
        for j, proj in enumerate(self.projs):
            projected.append(proj(split_cls(tokens[j])[0]))
        return torch.stack(projected).sum(0)

    def forward(self, tokens: List[torch.Tensor]) -> List[torch.Tensor]:
        fused_cls = self.sum_projected_cls(tokens)
        outputs = []
        for i, revert in enumerate(self.revert_projs):
            cls_token, patch_tokens = split_cls(tokens[i])
            fused = revert(fused_cls)
            outputs.append(torch.cat([cls_token + fused if self.residual else fused, patch_tokens], dim=1))
        return outputs
