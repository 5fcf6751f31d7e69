"""Multi-scale ViTs (two branches in the paper, any number, or one: a plain ViT) with pluggable fusion. Importing
this package registers every variant with timm under its ``VARIANTS`` key (``fusionvit_*``)."""
from . import variants  # noqa: F401  (registers the timm entrypoints)
from .complexity import count_flops, count_params, fusion_modules
from .convert import convert_crossvit_state_dict, convert_vit_state_dict
from .fusion import build_fusion, fusion_names, register_fusion
from .fusion_vit import FusionViT
from .pretrained import load_branch_from_vit
from .variants import DEIT_VARIANTS, PAPER_VARIANTS, VARIANTS

__all__ = ["FusionViT", "VARIANTS", "PAPER_VARIANTS", "DEIT_VARIANTS", "build_fusion", "convert_crossvit_state_dict",
           "convert_vit_state_dict", "count_flops", "count_params", "fusion_modules", "fusion_names",
           "load_branch_from_vit", "register_fusion"]
