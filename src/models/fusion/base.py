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
    """A fusion step: takes the tokens of every branch, ``[B, 1 + N_i, C_i]``, returns the same shapes.
    ``min_branches``: the fewest branches it fuses (the identity ``none`` also runs on one, a plain ViT)."""

    min_branches = 2

    def __init__(self, branches: Sequence[BranchSpec], options: FusionOptions):
        super().__init__()
        if len(branches) < self.min_branches:
            raise ValueError(f"fusion needs at least {self.min_branches} branches, got {len(branches)}")
        self.branches = tuple(branches)

    def forward(self, tokens: List[torch.Tensor]) -> List[torch.Tensor]:  # pragma: no cover - interface
        raise NotImplementedError


def projection(dim_in: int, dim_out: int, options: FusionOptions, identity_when_equal: bool = False) -> nn.Module:
    """f^{j->i} / g^i of the paper: LayerNorm -> GELU -> Linear, as in the official code.

    ``identity_when_equal`` makes it the identity between equal widths. The released code has that path but
    switches it off (``if dim[d] == dim[d + 1] and False``), so its models always project; the paper's
    parameter counts for class-token and pairwise fusion (24.2M) and for the S-width-384 row (31.4M) were
    measured with the identity path on."""
    if identity_when_equal and dim_in == dim_out:
        return nn.Identity()
    return nn.Sequential(options.norm_layer(dim_in), options.act_layer(), nn.Linear(dim_in, dim_out))


def widest(branches: Sequence[BranchSpec]) -> BranchSpec:
    """The branch whose width is the common width of the strategies that need one (the paper is silent;
    the widest, i.e. the L-branch, matches the paper's FLOP figures for all-attention)."""
    return max(branches, key=lambda branch: branch.dim)


def split_cls(tokens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    return tokens[:, :1], tokens[:, 1:]


def with_mean_agents(patch_tokens: List[torch.Tensor]) -> List[torch.Tensor]:
    """``[mean(patches) ; patches]`` per branch: the agent a CLS-based fusion reads when there is no CLS."""
    return [torch.cat([patches.mean(dim=1, keepdim=True), patches], dim=1) for patches in patch_tokens]


def from_mean_agents(fused: List[torch.Tensor]) -> List[torch.Tensor]:
    """The fused agent becomes the branch's new mean, each patch keeping its deviation from the mean."""
    outputs = []
    for tokens in fused:
        agent, patches = tokens[:, :1], tokens[:, 1:]
        outputs.append(patches + (agent - patches.mean(dim=1, keepdim=True)))
    return outputs


def fuse_with_mean_agents(fusion: Fusion, patch_tokens: List[torch.Tensor]) -> List[torch.Tensor]:
    """Runs a CLS-based fusion on branches that have no CLS token (the paper's "without CLS" model, Sec. 4.3).

    The paper: "the model averages the patch tokens of one branch as the CLS token for cross attention with
    the other branch". It does not say where the fused agent goes; our choice: it becomes the branch's new
    mean, each patch keeping its deviation from the mean, ``z_patch + (z_agent - mean(z_patch))``. So every
    strategy works unchanged, and one that leaves the agent alone (``none``) leaves the patches alone."""
    return from_mean_agents(fusion(with_mean_agents(patch_tokens)))
