"""The multi-scale ViT: one patch embedding per branch (two in the paper, any number as in the released code),
K multi-scale encoders each ending in a fusion step, a final norm and a linear head per branch, logits averaged
(CrossViT, arXiv 2103.14899). One branch with ``fusion="none"`` is a plain ViT (the paper's DeiT baselines)."""
from functools import partial
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from timm.layers import calculate_drop_path_rates, get_device_dtype
from timm.models import checkpoint
from timm.models._features import feature_take_indices
from timm.models.crossvit import scale_image
from timm.models.vision_transformer import Block

from .conv_stem import build_patch_embed
from .fusion import BranchSpec, FusionOptions, build_fusion, fusion_parameters
from .fusion.base import from_mean_agents, with_mean_agents
from .init import draw_model_seed, init_by_part
from .validation import (
    check_architecture,
    check_branch_counts,
    check_fusion_takes,
    check_global_pool,
    check_input_size,
    normalise_depth,
)


class MultiScaleEncoder(nn.Module):
    """One multi-scale encoder: ``depths[i]`` blocks on branch i (N on the S-branch, M on the L-branch), then
    the fusion step. Without CLS tokens the fusion gets each branch's mean patch token as its agent
    (``fuse_with_mean_agents``)."""

    def __init__(self, branches: Sequence[BranchSpec], depths: Sequence[int], mlp_ratios: Sequence[float],
                 fusion: nn.Module, drop_path: Sequence[float], qkv_bias: bool, proj_drop: float,
                 attn_drop: float, norm_layer, class_token: bool = True):
        super().__init__()
        self.class_token = class_token
        self.branches = nn.ModuleList([
            nn.Sequential(*[Block(dim=b.dim, num_heads=b.num_heads, mlp_ratio=ratio, qkv_bias=qkv_bias,
                                  proj_drop=proj_drop, attn_drop=attn_drop, drop_path=drop_path[i],
                                  norm_layer=norm_layer) for i in range(depth)])
            for b, depth, ratio in zip(branches, depths, mlp_ratios)])
        self.fusion = fusion

    def forward(self, tokens: List[torch.Tensor]) -> List[torch.Tensor]:
        outputs = []
        for i, blocks in enumerate(self.branches):  # indexed, so that TorchScript can unroll the ModuleList
            outputs.append(blocks(tokens[i]))
        if self.class_token:
            return self.fusion(outputs)
        return from_mean_agents(self.fusion(with_mean_agents(outputs)))


class FusionViT(nn.Module):
    """Multi-branch ViT with a pluggable fusion step. Defaults and parameter layout follow timm's CrossVit
    (``convert_crossvit_state_dict`` maps its weights, and the released code's for any number of branches);
    ``fusion`` picks the strategy by registry name.

    ``patch_size`` sets the number of branches n (one: a plain ViT, whose only fusion is ``none``); ``img_scale``,
    ``embed_dim`` and ``num_heads`` give one entry per branch, ``mlp_ratio`` one per branch optionally followed by
    the fusion's (CrossViT's ``(S, L, fusion)``; no strategy here reads it, as the released cross-attention has no
    FFN). ``depth`` is the released code's ``[d_0, ..., d_{n-1}, L]`` per encoder, K times: d_i blocks on branch i,
    then L fusion layers (0 means 1, as in the official code); with two branches that is CrossViT's
    ``((N, M, L), ...) * K``. A missing L is 0. ``fusion_layers`` overrides L for strategies that stack layers.

    ``class_token=False`` (timm's name) is the paper's model without CLS tokens (Sec. 4.3): no CLS and no
    position embedding for it, the fusion uses each branch's mean patch token as its agent, and each head
    reads the mean of its branch's patch tokens.

    The timm model API follows ``CrossVit``: ``global_pool`` ``'token'`` (each branch's CLS) or ``'avg'`` (its
    mean patch token), ``reset_classifier``, ``forward_intermediates`` / ``prune_intermediate_layers`` with
    features indexed branch-major (index ``b * K + k`` is branch b after encoder k), ``group_matcher`` (one
    group per encoder, for layer-wise lr decay) and ``set_grad_checkpointing`` (per encoder).
    """

    def __init__(self, img_size: int = 224, img_scale: Sequence[float] = (1.0, 1.0),
                 patch_size: Sequence[int] = (8, 16), in_chans: int = 3, num_classes: int = 1000,
                 embed_dim: Sequence[int] = (192, 384),
                 depth: Sequence[Sequence[int]] = ((1, 3, 1), (1, 3, 1), (1, 3, 1)),
                 num_heads: Sequence[int] = (6, 12), mlp_ratio: Sequence[float] = (2.0, 2.0, 4.0),
                 multi_conv: bool = False, qkv_bias: bool = True, drop_rate: float = 0.0,
                 pos_drop_rate: float = 0.0, proj_drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, fusion: str = "cross", fusion_layers: Optional[int] = None,
                 fusion_options: Optional[dict] = None, class_token: bool = True, global_pool: str = "token",
                 norm_layer=partial(nn.LayerNorm, eps=1e-6), device=None, dtype=None):
        super().__init__()
        model_seed = draw_model_seed()  # before any module draws: see init.py
        self.global_pool = check_global_pool(global_pool)
        self.in_chans = in_chans
        self.grad_checkpointing = False
        self.img_size = int(img_size)
        self.img_size_scaled = [int(self.img_size * s) for s in img_scale]
        num_branches = check_branch_counts(patch_size, img_scale, embed_dim, num_heads, mlp_ratio)
        check_fusion_takes(fusion, patch_size)
        depth, fusion_layers = normalise_depth(depth, fusion_layers, num_branches)
        check_architecture(self.img_size, self.img_size_scaled, patch_size, embed_dim, num_heads, multi_conv)
        self.num_classes = num_classes
        self.embed_dim = tuple(embed_dim)
        self.num_features = self.head_hidden_size = sum(embed_dim)
        self.fusion_name = fusion
        self.class_token = bool(class_token)
        self.num_prefix_tokens = prefix = 1 if self.class_token else 0

        self.patch_embed = nn.ModuleList([
            build_patch_embed(size, p, in_chans, d, multi_conv)
            for size, p, d in zip(self.img_size_scaled, patch_size, embed_dim)])
        grids = [(size // p, size // p) for size, p in zip(self.img_size_scaled, patch_size)]
        self.grid_sizes: List[Tuple[int, int]] = grids
        # ParameterLists give the official release's key layout (`cls_token.0`, `pos_embed.0`).
        self.cls_token = nn.ParameterList([nn.Parameter(torch.zeros(1, 1, d)) for d in embed_dim]
                                          if self.class_token else [])
        self.pos_embed = nn.ParameterList([
            nn.Parameter(torch.zeros(1, prefix + g[0] * g[1], d)) for g, d in zip(grids, embed_dim)])
        self.pos_drop = nn.Dropout(pos_drop_rate)

        branches = [BranchSpec(d, h, g) for d, h, g in zip(embed_dim, num_heads, grids)]
        self.encoders = nn.ModuleList()
        for depths, rates in zip(depth, self._drop_path_rates(depth, drop_path_rate)):
            options = FusionOptions(qkv_bias=qkv_bias, attn_drop=attn_drop_rate, proj_drop=proj_drop_rate,
                                    drop_path=rates[-1], norm_layer=norm_layer)
            strategy_options = dict(fusion_options or {})
            if fusion_layers is not None:
                strategy_options["layers"] = fusion_layers
            elif "layers" in fusion_parameters(fusion):  # CrossViT's L: 0 in a depth triple means 1
                strategy_options["layers"] = max(depths[-1], 1)
            fusion_module = build_fusion(fusion, branches, options, **strategy_options)
            self.encoders.append(MultiScaleEncoder(branches, depths[:-1], mlp_ratio, fusion_module, rates,
                                                   qkv_bias, proj_drop_rate, attn_drop_rate, norm_layer,
                                                   self.class_token))

        self.num_feature_blocks = len(depth)
        self.feature_info = [dict(num_chs=embed_dim[b], reduction=round(patch_size[b] / img_scale[b]),
                                  module=f"encoders.{k}")
                             for b in range(len(embed_dim)) for k in range(self.num_feature_blocks)]
        self.norm = nn.ModuleList([norm_layer(d) for d in embed_dim])
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.ModuleList([nn.Linear(d, num_classes) if num_classes > 0 else nn.Identity()
                                   for d in embed_dim])
        init_by_part(self, model_seed)
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    @staticmethod
    def _drop_path_rates(depth, drop_path_rate) -> List[List[float]]:
        """timm's CrossVit schedule, kept for equal training: linear over the sum of max(d_i) + L layers, each
        encoder taking its max(d_i) + L rates (blocks use the first ones, the fusion the last). timm and the
        released code sum the last branch's blocks instead: the same wherever the last branch is the deepest (every
        released model), and too few rates, an IndexError there, where it is not."""
        total = sum(max(blocks) + extra for *blocks, extra in depth)
        rates = calculate_drop_path_rates(drop_path_rate, total)
        out, start = [], 0
        for *blocks, extra in depth:
            span = max(blocks) + extra
            out.append(rates[start:start + span])
            start += span
        return out

    @torch.jit.ignore
    def no_weight_decay(self):
        return {f"{name}.{i}" for name in ("cls_token", "pos_embed") for i in range(len(getattr(self, name)))}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(stem=r"^cls_token|^pos_embed|^patch_embed",
                    blocks=[(r"^encoders\.(\d+)", None), (r"^norm", (99999,))])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        if global_pool is not None:
            self.global_pool = check_global_pool(global_pool)
        self.num_classes = num_classes
        factory = get_device_dtype(self)
        self.head = nn.ModuleList([nn.Linear(d, num_classes, **factory) if num_classes > 0 else nn.Identity()
                                   for d in self.embed_dim])
        self.head.train(self.training)

    def embed(self, images: torch.Tensor) -> List[torch.Tensor]:
        check_input_size(images, self.img_size)
        cls_tokens = [cls_token for cls_token in self.cls_token]  # a list, which TorchScript can index
        pos_embeds = [pos_embed for pos_embed in self.pos_embed]
        tokens = []
        for i, patch_embed in enumerate(self.patch_embed):
            size = self.img_size_scaled[i]
            branch = patch_embed(scale_image(images, (size, size)))
            if self.class_token:
                branch = torch.cat([cls_tokens[i].expand(images.shape[0], -1, -1), branch], dim=1)
            tokens.append(self.pos_drop(branch + pos_embeds[i]))
        return tokens

    def forward_features(self, images: torch.Tensor) -> List[torch.Tensor]:
        tokens = self.embed(images)
        for encoder in self.encoders:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                tokens = checkpoint(encoder, tokens)
            else:
                tokens = encoder(tokens)
        return [norm(tokens[i]) for i, norm in enumerate(self.norm)]

    def forward_intermediates(self, images: torch.Tensor, indices: Optional[Union[int, List[int]]] = None,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False):
        """timm's feature API, as ``CrossVit``: each branch's patch tokens after each encoder, branch-major
        (``indices``: the last n if an int, all if None); ``norm`` applies the branch's final norm; NCHW maps
        or NLC tokens. Returns ``intermediates``, or ``(final normed tokens per branch, intermediates)``."""
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError(f"output_fmt={output_fmt!r}: pick one of 'NCHW', 'NLC'")
        blocks = self.num_feature_blocks
        take_indices, _ = feature_take_indices(len(self.embed_dim) * blocks, indices)
        last = max([index % blocks for index in take_indices])
        encoders = self.encoders if torch.jit.is_scripting() or not stop_early else self.encoders[:last + 1]
        tokens = self.embed(images)
        taken: List[List[torch.Tensor]] = [[] for _ in self.embed_dim]
        for k, encoder in enumerate(encoders):
            tokens = checkpoint(encoder, tokens) if self.grad_checkpointing else encoder(tokens)
            for b, norm_layer in enumerate(self.norm):
                if b * blocks + k in take_indices:
                    taken[b].append((norm_layer(tokens[b]) if norm else tokens[b])[:, self.num_prefix_tokens:])
        intermediates = []
        for (rows, cols), branch in zip(self.grid_sizes, taken):
            if output_fmt == "NCHW":
                branch = [t.reshape(t.shape[0], rows, cols, -1).permute(0, 3, 1, 2).contiguous() for t in branch]
            intermediates.extend(branch)
        if intermediates_only:
            return intermediates
        return [norm_layer(tokens[i]) for i, norm_layer in enumerate(self.norm)], intermediates

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """Keeps the encoders up to the last one ``indices`` need. The fusion of the last kept encoder still
        feeds the other branch even when only one branch's features are taken (DDP: find_unused_parameters)."""
        blocks = self.num_feature_blocks
        take_indices, _ = feature_take_indices(len(self.embed_dim) * blocks, indices)
        self.encoders = self.encoders[:max([index % blocks for index in take_indices]) + 1]
        if prune_norm:
            self.norm = nn.ModuleList([nn.Identity() for _ in self.embed_dim])
        if prune_head:
            self.reset_classifier(0)
        return take_indices

    def _pool(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.class_token and self.global_pool == "token":
            return tokens[:, 0]
        return tokens[:, self.num_prefix_tokens:].mean(dim=1)

    def forward_head(self, tokens: List[torch.Tensor], pre_logits: bool = False,
                     per_branch: bool = False) -> torch.Tensor:
        """Averaged logits ``[B, classes]``; ``per_branch`` gives each branch's head alone, ``[branches, B,
        classes]`` (S first), which the paper's single-branch accuracies (Table 6) are computed from. Without
        a CLS token both poolings are the mean patch token."""
        pooled = [self.head_drop(self._pool(t)) for t in tokens]
        if pre_logits or self.num_classes == 0:
            return torch.cat(pooled, dim=1)
        branch_logits = torch.stack([head(pooled[i]) for i, head in enumerate(self.head)])
        return branch_logits if per_branch else branch_logits.mean(0)

    def forward_branches(self, images: torch.Tensor) -> torch.Tensor:
        """Each branch head's logits, ``[branches, B, classes]``; their mean is ``forward(images)``."""
        return self.forward_head(self.forward_features(images), per_branch=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))
