"""Every CrossViT configuration of the paper (timm's ``crossvit_*`` entries) plus small ones for CPU work,
registered with timm under their ``VARIANTS`` key (``fusionvit_*``), which is also their ``model=`` option and
``model.name``. Each takes any fusion strategy (``fusion=...``)."""
import sys
from typing import Dict

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, register_model

from .fusion_vit import FusionViT

# Every entry states the whole architecture, so that the generated `model=` option shows every value.
_240 = dict(img_size=240, img_scale=(1.0, 224 / 240), patch_size=(12, 16), multi_conv=False)
_408 = dict(img_size=408, img_scale=(1.0, 384 / 408), patch_size=(12, 16), multi_conv=True)
_DAGGER = dict(_240, multi_conv=True)
_32 = dict(img_size=32, img_scale=(1.0, 1.0), patch_size=(4, 8), multi_conv=False)

# The timm name -> its configuration; the paper's mirror timm's ``crossvit_*`` of the same suffix.
# Depth triples are CrossViT's (N, M, L).
VARIANTS: Dict[str, dict] = {
    "fusionvit_tiny_240": dict(_240, embed_dim=(96, 192), depth=((1, 4, 0),) * 3, num_heads=(3, 3),
                               mlp_ratio=(4, 4, 1)),
    "fusionvit_small_240": dict(_240, embed_dim=(192, 384), depth=((1, 4, 0),) * 3, num_heads=(6, 6),
                                mlp_ratio=(4, 4, 1)),
    "fusionvit_base_240": dict(_240, embed_dim=(384, 768), depth=((1, 4, 0),) * 3, num_heads=(12, 12),
                               mlp_ratio=(4, 4, 1)),
    "fusionvit_9_240": dict(_240, embed_dim=(128, 256), depth=((1, 3, 0),) * 3, num_heads=(4, 4),
                            mlp_ratio=(3, 3, 1)),
    "fusionvit_15_240": dict(_240, embed_dim=(192, 384), depth=((1, 5, 0),) * 3, num_heads=(6, 6),
                             mlp_ratio=(3, 3, 1)),
    "fusionvit_18_240": dict(_240, embed_dim=(224, 448), depth=((1, 6, 0),) * 3, num_heads=(7, 7),
                             mlp_ratio=(3, 3, 1)),
    "fusionvit_9_dagger_240": dict(_DAGGER, embed_dim=(128, 256), depth=((1, 3, 0),) * 3, num_heads=(4, 4),
                                   mlp_ratio=(3, 3, 1)),
    "fusionvit_15_dagger_240": dict(_DAGGER, embed_dim=(192, 384), depth=((1, 5, 0),) * 3, num_heads=(6, 6),
                                    mlp_ratio=(3, 3, 1)),
    "fusionvit_18_dagger_240": dict(_DAGGER, embed_dim=(224, 448), depth=((1, 6, 0),) * 3, num_heads=(7, 7),
                                    mlp_ratio=(3, 3, 1)),
    "fusionvit_15_dagger_408": dict(_408, embed_dim=(192, 384), depth=((1, 5, 0),) * 3, num_heads=(6, 6),
                                    mlp_ratio=(3, 3, 1)),
    "fusionvit_18_dagger_408": dict(_408, embed_dim=(224, 448), depth=((1, 6, 0),) * 3, num_heads=(7, 7),
                                    mlp_ratio=(3, 3, 1)),
    # CPU-sized, for 32x32 inputs (digits, CIFAR); parameter counts (cross, 10 classes) are in the README.
    "fusionvit_micro_32": dict(_32, embed_dim=(48, 96), depth=((1, 2, 0),) * 2, num_heads=(3, 3),
                               mlp_ratio=(3, 3, 1)),
    "fusionvit_mini_32": dict(_32, embed_dim=(64, 128), depth=((1, 3, 0),) * 3, num_heads=(4, 4),
                              mlp_ratio=(3, 3, 1)),
    "fusionvit_small_32": dict(_32, embed_dim=(128, 256), depth=((1, 4, 0),) * 3, num_heads=(4, 4),
                               mlp_ratio=(3, 3, 1)),
}
PAPER_VARIANTS = [name for name in VARIANTS if not name.endswith("_32")]


def _first_convs(config: dict) -> tuple:
    """Each branch's first conv, as timm's crossvit_* name them: the dagger embedding is a Sequential."""
    suffix = ".0" if config["multi_conv"] else ""
    return tuple(f"patch_embed.{branch}.proj{suffix}" for branch in range(len(config["patch_size"])))


def _default_cfg(config: dict) -> dict:
    size = config["img_size"]
    return dict(url="", num_classes=1000, input_size=(3, size, size), pool_size=None,
                crop_pct=0.875 if size == 240 else 1.0, interpolation="bicubic", fixed_input_size=True,
                mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, first_conv=_first_convs(config),
                classifier=("head.0", "head.1"))


default_cfgs = {name: _default_cfg(config) for name, config in VARIANTS.items()}


def _entrypoint(name: str):
    def create(pretrained: bool = False, **kwargs) -> FusionViT:
        if pretrained:
            raise ValueError(f"{name} has no hub weights (nothing can be downloaded here): load a timm or "
                             f"official CrossViT checkpoint with src.models.convert_crossvit_state_dict")
        return build_model_with_cfg(FusionViT, name, pretrained=False, **dict(VARIANTS[name], **kwargs))

    create.__name__ = create.__qualname__ = name
    create.__module__ = __name__
    create.__doc__ = f"FusionViT {name}: {VARIANTS[name]}"
    return create


for _name in VARIANTS:
    _fn = _entrypoint(_name)
    setattr(sys.modules[__name__], _fn.__name__, _fn)
    register_model(_fn)
