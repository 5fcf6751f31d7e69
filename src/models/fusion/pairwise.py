from typing import List, Tuple

import torch
import torch.nn.functional as F

from .base import split_cls
from .cls_token import ClassTokenFusion
from .registry import register_fusion


def resize_patch_grid(patch_tokens: torch.Tensor, grid_from: Tuple[int, int], grid_to: Tuple[int, int]
                      ) -> torch.Tensor:
    """Bilinearly resamples ``[B, H*W, C]`` patch tokens from one grid to another."""
    if grid_from[0] == grid_to[0] and grid_from[1] == grid_to[1]:
        return patch_tokens
    grid = patch_tokens.transpose(1, 2).reshape(patch_tokens.shape[0], patch_tokens.shape[2], grid_from[0],
                                                grid_from[1])
    grid = F.interpolate(grid, size=[grid_to[0], grid_to[1]], mode="bilinear", align_corners=False)
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
    already at the common width (``identity_when_equal``, default on: the paper's 24.2M). ``residual`` (default
    off, not the paper's) adds each branch's own tokens back, as in ``cls_token``.
    """

    def __init__(self, branches, options, identity_when_equal: bool = True, order: str = "project_first",
                 residual: bool = False):
        super().__init__(branches, options, identity_when_equal, residual)
        if order not in ORDERS:
            raise ValueError(f"fusion.options.order={order!r} for pairwise: pick one of {', '.join(ORDERS)}")
        self.order = order
        self.grid_sizes: List[Tuple[int, int]] = [tuple(b.grid_size) for b in branches]

    def forward(self, tokens: List[torch.Tensor]) -> List[torch.Tensor]:
        fused_cls = self.sum_projected_cls(tokens)
        patch_tokens = [split_cls(t)[1] for t in tokens]
        if self.order == "project_first":  # each branch projected once, at its own grid
            projected = []
            for j, proj in enumerate(self.projs):
                projected.append(proj(patch_tokens[j]))
            patch_tokens = projected
        outputs = []
        for i, revert in enumerate(self.revert_projs):
            aligned = [resize_patch_grid(patch_tokens[j], self.grid_sizes[j], self.grid_sizes[i])
                       for j in range(len(patch_tokens))]
            if self.order == "resample_first":
                for j, proj in enumerate(self.projs):
                    aligned[j] = proj(aligned[j])
            summed = aligned[0]
            for j in range(1, len(aligned)):
                summed = summed + aligned[j]
            fused = revert(torch.cat([fused_cls, summed], dim=1))
            outputs.append(tokens[i] + fused if self.residual else fused)
        return outputs
