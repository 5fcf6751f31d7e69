from typing import List

import torch
import torch.nn.functional as F

from .base import split_cls
from .cls_token import ClassTokenFusion
from .registry import register_fusion


def resize_patch_grid(patch_tokens: torch.Tensor, grid_from, grid_to) -> torch.Tensor:
    """Bilinearly resamples ``[B, H*W, C]`` patch tokens from one grid to another."""
    if tuple(grid_from) == tuple(grid_to):
        return patch_tokens
    batch, _, channels = patch_tokens.shape
    grid = patch_tokens.transpose(1, 2).reshape(batch, channels, *grid_from)
    grid = F.interpolate(grid, size=tuple(grid_to), mode="bilinear", align_corners=False)
    return grid.flatten(2).transpose(1, 2)


ORDERS = ("project_first", "resample_first")


@register_fusion("pairwise")
class PairwiseFusion(ClassTokenFusion):
    """Pairwise fusion (paper Eq. 4, Fig. 3c): CLS with CLS, and each patch with the patch at the same place.

        z^i_cls   = g^i( sum_j f^j(x^j_cls) )
        z^i_patch = g^i( sum_j interp_{j->i}( f^j(x^j_patch) ) )

    ``interp_{j->i}`` resamples branch j's patch grid to branch i's (bilinear; identity for j = i). The paper
    says only "interpolation to align the spatial size" and leaves the order open. ``order="project_first"``
    (default, as above) projects each branch once at its own grid, then resamples: 5.53 G on CrossViT-S,
    the paper's 5.5 G. ``"resample_first"`` resamples the raw tokens, then projects on every target grid
    (``f^j(interp_{j->i}(x^j_patch))``): 5.57 G. ``f^j``/``g^i`` are shared between CLS and patch tokens and,
    as in ``cls_token`` (whose projections and CLS sum this class reuses), the identity for the branch
    already at the common width (``identity_when_equal``, default on: the paper's 24.2M).
    """

    def __init__(self, branches, options, identity_when_equal: bool = True, order: str = "project_first"):
        super().__init__(branches, options, identity_when_equal)
        if order not in ORDERS:
            raise ValueError(f"fusion.options.order={order!r} for pairwise: pick one of {', '.join(ORDERS)}")
        self.order = order

    def forward(self, tokens: List[torch.Tensor]) -> List[torch.Tensor]:
        cls_tokens, patch_tokens = zip(*(split_cls(t) for t in tokens))
        fused_cls = self.sum_projected_cls(cls_tokens)
        if self.order == "project_first":  # each branch projected once, at its own grid
            patch_tokens = [proj(patches) for proj, patches in zip(self.projs, patch_tokens)]
        outputs = []
        for target, revert in zip(self.branches, self.revert_projs):
            aligned = [resize_patch_grid(patches, source.grid_size, target.grid_size)
                       for patches, source in zip(patch_tokens, self.branches)]
            if self.order == "resample_first":
                aligned = [proj(patches) for proj, patches in zip(self.projs, aligned)]
            outputs.append(revert(torch.cat([fused_cls, sum(aligned)], dim=1)))
        return outputs
