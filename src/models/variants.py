"""Every CrossViT configuration of the paper (timm's ``crossvit_*`` entries) plus small ones for CPU work,
registered with timm under their ``VARIANTS`` key (``fusionvit_*``), which is also their ``model=`` option and
``model.name``. Each takes any fusion strategy (``fusion=...``). The table itself is ``src.variant_table``
(plain data, read by the config before torch is needed); ``VARIANTS`` and ``PAPER_VARIANTS`` are re-exported."""
import sys
from pathlib import Path
from typing import Optional

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from src.variant_table import PAPER_VARIANTS, VARIANTS  # noqa: F401  (re-exported)

from .fusion_vit import FusionViT
from .pretrained import adapt_crossvit_state_dict


def _first_convs(config: dict) -> tuple:
    """Each branch's first conv, as timm's crossvit_* name them: the dagger embedding is a Sequential."""
    suffix = ".0" if config["multi_conv"] else ""
    return tuple(f"patch_embed.{branch}.proj{suffix}" for branch in range(len(config["patch_size"])))


def _default_cfg(name: str, config: dict) -> dict:
    size = config["img_size"]
    return dict(url="", num_classes=1000, input_size=(3, size, size), pool_size=None,
                crop_pct=0.875 if size == 240 else 1.0, interpolation="bicubic", fixed_input_size=True,
                mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, first_conv=_first_convs(config),
                classifier=tuple(f"head.{branch}" for branch in range(len(config["patch_size"]))),
                license="apache-2.0")


def _hub_weights(name: str) -> str:
    """timm's ImageNet-1k weights of the crossvit_* with the same suffix (loaded through the converter)."""
    return "timm/" + name.replace("fusionvit_", "crossvit_", 1) + ".in1k"


default_cfgs = generate_default_cfgs({
    **{f"{name}.in1k": dict(_default_cfg(name, VARIANTS[name]), hf_hub_id=_hub_weights(name))
       for name in PAPER_VARIANTS},
    **{name: _default_cfg(name, config) for name, config in VARIANTS.items() if name not in PAPER_VARIANTS},
})


def _check_pretrained_source(name: str, overlay: Optional[dict]) -> None:
    """timm's own errors here give no path (a missing file) or try the network; say what to give instead."""
    overlay = overlay or {}
    path = overlay.get("file")
    if path is not None and not Path(path).is_file():
        raise FileNotFoundError(f"no checkpoint at {path} (pretrained_cfg_overlay file=): give the path of a "
                                f"timm or official CrossViT .pth / .safetensors file")
    if name not in PAPER_VARIANTS and not any(overlay.get(k) for k in ("file", "state_dict", "hf_hub_id", "url")):
        raise ValueError(f"{name} has no published weights: give a CrossViT checkpoint with "
                         f"pretrained_cfg_overlay=dict(file=PATH), converted on load")


def _entrypoint(name: str):
    def create(pretrained: bool = False, **kwargs) -> FusionViT:
        if pretrained:
            _check_pretrained_source(name, kwargs.get("pretrained_cfg_overlay"))
        config = dict(VARIANTS[name], **kwargs)
        blocks = len(config["depth"])  # features default to each branch's last encoder output, as CrossVit
        branches = len(config["patch_size"])
        out_indices = config.pop("out_indices", tuple(b * blocks + blocks - 1 for b in range(branches)))
        return build_model_with_cfg(FusionViT, name, pretrained, pretrained_filter_fn=adapt_crossvit_state_dict,
                                    feature_cfg=dict(out_indices=out_indices, feature_cls="getter"), **config)

    create.__name__ = create.__qualname__ = name
    create.__module__ = __name__
    create.__doc__ = f"FusionViT {name}: {VARIANTS[name]}"
    return create


for _name in VARIANTS:
    _fn = _entrypoint(_name)
    setattr(sys.modules[__name__], _fn.__name__, _fn)
    register_model(_fn)
