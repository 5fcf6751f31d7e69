"""Dual-branch multi-scale ViTs with pluggable fusion. Importing this package registers every variant with
timm under its ``VARIANTS`` key (``fusionvit_*``)."""
from . import variants  # noqa: F401  (registers the timm entrypoints)
from .complexity import count_flops, count_params, fusion_modules
from .convert import convert_crossvit_state_dict
from .fusion import build_fusion, fusion_names, register_fusion
from .fusion_vit import FusionViT
from .variants import PAPER_VARIANTS, VARIANTS

__all__ = ["FusionViT", "VARIANTS", "PAPER_VARIANTS", "build_fusion", "convert_crossvit_state_dict",
           "count_flops", "count_params", "fusion_modules", "fusion_names", "register_fusion"]
