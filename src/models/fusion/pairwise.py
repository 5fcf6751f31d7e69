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


@register_fusion("pairwise")
class PairwiseFusion(ClassTokenFusion):
    """Pairwise fusion (paper Fig. 3d): CLS with CLS, and each patch with the patch at the same place.

        z^i_cls   = g^i( sum_j f^j(x^j_cls) )
        z^i_patch = g^i( sum_j f^j( interp_{j->i}(x^j_patch) ) )

    ``interp_{j->i}`` resamples branch j's patch grid to branch i's (bilinear; identity for j = i). The paper
    says only "interpolation"; we interpolate the tokens before projecting, and share ``f^j``/``g^i``
    between CLS and patch tokens. The common width is the widest branch's, as in ``cls_token``, whose
    projections (``projs`` = f, ``revert_projs`` = g) and CLS sum this class reuses.
    """

    def forward(self, tokens: List[torch.Tensor]) -> List[torch.Tensor]:
        cls_tokens, patch_tokens = zip(*(split_cls(t) for t in tokens))
        fused_cls = self.sum_projected_cls(cls_tokens)
        outputs = []
        for target, revert in zip(self.branches, self.revert_projs):
            fused_patches = sum(
                proj(resize_patch_grid(patches, source.grid_size, target.grid_size))
                for proj, patches, source in zip(self.projs, patch_tokens, self.branches))
            outputs.append(revert(torch.cat([fused_cls, fused_patches], dim=1)))
        return outputs
