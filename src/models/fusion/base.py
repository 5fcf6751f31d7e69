"""The fusion interface every strategy implements, and the pieces they share."""
from dataclasses import dataclass
from functools import partial
from typing import Callable, List, Sequence, Tuple

import torch
import torch.nn as nn


@dataclass(frozen=True)
class BranchSpec:
    """What a fusion step needs to know about one branch."""

    dim: int
    num_heads: int
    grid_size: Tuple[int, int]  # patch grid (rows, cols); tokens are [CLS, row-major patches]


@dataclass(frozen=True)
class FusionOptions:
    """Settings the model passes to every strategy; strategy-specific ones come as keyword arguments."""

    qkv_bias: bool = True
    attn_drop: float = 0.0
    proj_drop: float = 0.0
    drop_path: float = 0.0
    norm_layer: Callable[[int], nn.Module] = partial(nn.LayerNorm, eps=1e-6)
    act_layer: Callable[[], nn.Module] = nn.GELU


class Fusion(nn.Module):
    """A fusion step: takes the tokens of every branch, ``[B, 1 + N_i, C_i]``, returns the same shapes."""

    def __init__(self, branches: Sequence[BranchSpec], options: FusionOptions):
        super().__init__()
        if len(branches) < 2:
            raise ValueError(f"fusion needs at least two branches, got {len(branches)}")
        self.branches = tuple(branches)

    def forward(self, tokens: List[torch.Tensor]) -> List[torch.Tensor]:  # pragma: no cover - interface
        raise NotImplementedError


def projection(dim_in: int, dim_out: int, options: FusionOptions) -> nn.Sequential:
    """f^{j->i} / g^i of the paper: LayerNorm -> GELU -> Linear, as in the official code (always present,
    even when the widths match)."""
    return nn.Sequential(options.norm_layer(dim_in), options.act_layer(), nn.Linear(dim_in, dim_out))


def widest(branches: Sequence[BranchSpec]) -> BranchSpec:
    """The branch whose width is the common width of the strategies that need one (the paper is silent;
    the widest, i.e. the L-branch, matches the paper's FLOP figures for all-attention)."""
    return max(branches, key=lambda branch: branch.dim)


def split_cls(tokens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    return tokens[:, :1], tokens[:, 1:]
