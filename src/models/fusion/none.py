from typing import List

import torch

from .base import Fusion
from .registry import register_fusion


@register_fusion("none")
class NoFusion(Fusion):
    """No fusion: ``z^i = x^i``. The branches meet only at the head, where the logits are averaged."""

    def forward(self, tokens: List[torch.Tensor]) -> List[torch.Tensor]:
        return list(tokens)
