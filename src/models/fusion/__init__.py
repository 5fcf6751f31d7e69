"""Fusion strategies. Every module in this package is imported here, so a new strategy is one file that
calls ``register_fusion`` plus its ``conf/fusion/NAME.yaml``."""
import importlib
import pkgutil

from .base import BranchSpec, Fusion, FusionOptions
from .registry import build_fusion, fusion_class, fusion_names, fusion_parameters, register_fusion

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("base", "registry"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["BranchSpec", "Fusion", "FusionOptions", "build_fusion", "fusion_class", "fusion_names",
           "fusion_parameters", "register_fusion"]
