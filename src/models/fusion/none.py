from typing import List

import torch

from .base import Fusion
from .registry import register_fusion


@register_fusion("none")
class NoFusion(Fusion):
    """No fusion: ``z^i = x^i``. The branches meet only at the head, where the logits are averaged. On one
    branch the model is a plain ViT (DeiT: ``fusionvit_deit_*``)."""

    min_branches = 1

    def forward(self, tokens: List[torch.Tensor]) -> List[torch.Tensor]:
        return list(tokens)
