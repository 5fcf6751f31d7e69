"""The dual-branch multi-scale ViT: two patch embeddings, K multi-scale encoders each ending in a fusion
step, a final norm and a linear head per branch, logits averaged (CrossViT, arXiv 2103.14899)."""
from functools import partial
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
from timm.layers import calculate_drop_path_rates, trunc_normal_
from timm.models.crossvit import PatchEmbed, scale_image
from timm.models.vision_transformer import Block

from .fusion import BranchSpec, FusionOptions, build_fusion, fusion_parameters
from .fusion.base import fuse_with_mean_agents
from .validation import check_architecture, check_input_size, normalise_depth

DAGGER_PATCH_SIZES = (12, 16)  # the 3-conv ("dagger") embedding exists only for these


class MultiScaleEncoder(nn.Module):
    """One multi-scale encoder: N blocks on the S-branch, M on the L-branch, then the fusion step. Without
    CLS tokens the fusion gets each branch's mean patch token as its agent (``fuse_with_mean_agents``)."""

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
        tokens = [blocks(t) for blocks, t in zip(self.branches, tokens)]
        return self.fusion(tokens) if self.class_token else fuse_with_mean_agents(self.fusion, tokens)


class FusionViT(nn.Module):
    """Dual-branch ViT with a pluggable fusion step. Defaults and parameter layout follow timm's CrossVit
    (``convert_crossvit_state_dict`` maps its weights); ``fusion`` picks the strategy by registry name.

    ``depth`` is CrossViT's ``((N, M, L), ...) * K``: N S-branch blocks, M L-branch blocks, L fusion layers
    (0 means 1, as in the official code). ``fusion_layers`` overrides L for strategies that stack layers.

    ``class_token=False`` (timm's name) is the paper's model without CLS tokens (Sec. 4.3): no CLS and no
    position embedding for it, the fusion uses each branch's mean patch token as its agent, and each head
    reads the mean of its branch's patch tokens.
    """

    def __init__(self, img_size: int = 224, img_scale: Sequence[float] = (1.0, 1.0),
                 patch_size: Sequence[int] = (8, 16), in_chans: int = 3, num_classes: int = 1000,
                 embed_dim: Sequence[int] = (192, 384),
                 depth: Sequence[Sequence[int]] = ((1, 3, 1), (1, 3, 1), (1, 3, 1)),
                 num_heads: Sequence[int] = (6, 12), mlp_ratio: Sequence[float] = (2.0, 2.0, 4.0),
                 multi_conv: bool = False, qkv_bias: bool = True, drop_rate: float = 0.0,
                 pos_drop_rate: float = 0.0, proj_drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, fusion: str = "cross", fusion_layers: Optional[int] = None,
                 fusion_options: Optional[dict] = None, class_token: bool = True,
                 norm_layer=partial(nn.LayerNorm, eps=1e-6)):
        super().__init__()
        self.img_size = int(img_size)
        self.img_size_scaled = [int(self.img_size * s) for s in img_scale]
        depth, fusion_layers = normalise_depth(depth, fusion_layers)
        check_architecture(self.img_size, self.img_size_scaled, patch_size, embed_dim, num_heads,
                           mlp_ratio, depth, multi_conv, DAGGER_PATCH_SIZES)
        self.num_classes = num_classes
        self.embed_dim = tuple(embed_dim)
        self.num_features = sum(embed_dim)
        self.fusion_name = fusion
        self.class_token = bool(class_token)
        prefix = 1 if self.class_token else 0

        self.patch_embed = nn.ModuleList([
            PatchEmbed(img_size=size, patch_size=p, in_chans=in_chans, embed_dim=d, multi_conv=multi_conv)
            for size, p, d in zip(self.img_size_scaled, patch_size, embed_dim)])
        grids = [(size // p, size // p) for size, p in zip(self.img_size_scaled, patch_size)]
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
                strategy_options["layers"] = max(depths[2], 1)
            fusion_module = build_fusion(fusion, branches, options, **strategy_options)
            self.encoders.append(MultiScaleEncoder(branches, depths[:2], mlp_ratio, fusion_module, rates,
                                                   qkv_bias, proj_drop_rate, attn_drop_rate, norm_layer,
                                                   self.class_token))

        self.norm = nn.ModuleList([norm_layer(d) for d in embed_dim])
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.ModuleList([nn.Linear(d, num_classes) if num_classes > 0 else nn.Identity()
                                   for d in embed_dim])
        for param in [*self.cls_token, *self.pos_embed]:
            trunc_normal_(param, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _drop_path_rates(depth, drop_path_rate) -> List[List[float]]:
        """timm's CrossVit schedule, kept for equal training: linear over sum(M + L) layers, each encoder
        taking max(N, M) + L rates (blocks use the first ones, the fusion the last)."""
        total = sum(m + extra for _, m, extra in depth)
        rates = calculate_drop_path_rates(drop_path_rate, total)
        out, start = [], 0
        for n, m, extra in depth:
            span = max(n, m) + extra
            out.append(rates[start:start + span])
            start += span
        return out

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @torch.jit.ignore
    def no_weight_decay(self):
        return {f"{name}.{i}" for name in ("cls_token", "pos_embed") for i in range(len(getattr(self, name)))}

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.ModuleList([nn.Linear(d, num_classes) if num_classes > 0 else nn.Identity()
                                   for d in self.embed_dim])

    def embed(self, images: torch.Tensor) -> List[torch.Tensor]:
        check_input_size(images, self.img_size)
        tokens = []
        for i, (size, patch_embed, pos_embed) in enumerate(zip(self.img_size_scaled, self.patch_embed,
                                                               self.pos_embed)):
            branch = patch_embed(scale_image(images, (size, size)))
            if self.class_token:
                branch = torch.cat([self.cls_token[i].expand(images.shape[0], -1, -1), branch], dim=1)
            tokens.append(self.pos_drop(branch + pos_embed))
        return tokens

    def forward_features(self, images: torch.Tensor) -> List[torch.Tensor]:
        tokens = self.embed(images)
        for encoder in self.encoders:
            tokens = encoder(tokens)
        return [norm(t) for norm, t in zip(self.norm, tokens)]

    def forward_head(self, tokens: List[torch.Tensor], pre_logits: bool = False,
                     per_branch: bool = False) -> torch.Tensor:
        """Averaged logits ``[B, classes]``; ``per_branch`` gives each branch's head alone, ``[branches, B,
        classes]`` (S first), which the paper's single-branch accuracies (Table 6) are computed from."""
        pooled = [self.head_drop(t[:, 0] if self.class_token else t.mean(dim=1)) for t in tokens]
        if pre_logits or self.num_classes == 0:
            return torch.cat(pooled, dim=1)
        branch_logits = torch.stack([head(p) for head, p in zip(self.head, pooled)])
        return branch_logits if per_branch else branch_logits.mean(0)

    def forward_branches(self, images: torch.Tensor) -> torch.Tensor:
        """Each branch head's logits, ``[branches, B, classes]``; their mean is ``forward(images)``."""
        return self.forward_head(self.forward_features(images), per_branch=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))
