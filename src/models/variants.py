"""Every CrossViT configuration of the paper (timm's ``crossvit_*`` entries), the paper's single-branch DeiT
baselines (timm's ``deit_*_patch16_224``) and small ones for CPU work, registered with timm under their ``VARIANTS``
key (``fusionvit_*``), which is also their ``model=`` option and ``model.name``. Each multi-branch variant takes any
fusion strategy (``fusion=...``); a single-branch one only ``none``, its default. The table itself is
``src.variant_table`` (plain data, read by the config before torch is needed); ``VARIANTS``, ``PAPER_VARIANTS`` and
``DEIT_VARIANTS`` are re-exported."""
import sys
from pathlib import Path
from typing import Optional

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from src.variant_table import DEIT_VARIANTS, PAPER_VARIANTS, VARIANTS  # noqa: F401  (re-exported)

from .fusion_vit import FusionViT
from .pretrained import adapt_crossvit_state_dict


def _first_convs(config: dict) -> tuple:
    """Each branch's first conv, as timm's crossvit_* name them: the dagger embedding is a Sequential."""
    suffix = ".0" if config["multi_conv"] else ""
    return tuple(f"patch_embed.{branch}.proj{suffix}" for branch in range(len(config["patch_size"])))


def _crop_pct(name: str, size: int) -> float:
    if name in DEIT_VARIANTS:
        return 0.9  # timm's deit_*_patch16_224 (resize to 248, crop 224)
    return 0.875 if size == 240 else 1.0


def _default_cfg(name: str, config: dict) -> dict:
    size = config["img_size"]
    return dict(url="", num_classes=1000, input_size=(3, size, size), pool_size=None,
                crop_pct=_crop_pct(name, size), interpolation="bicubic", fixed_input_size=True,
                mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, first_conv=_first_convs(config),
                classifier=tuple(f"head.{branch}" for branch in range(len(config["patch_size"]))),
                license="apache-2.0")


def timm_reference(name: str) -> str:
    """The timm model a published variant mirrors: crossvit_ with the same suffix, or deit_<size>_patch16_224."""
    if name in DEIT_VARIANTS:
        return name.replace("fusionvit_deit_", "deit_", 1).replace("_224", "_patch16_224")
    return name.replace("fusionvit_", "crossvit_", 1)


# timm's ImageNet-1k weights of the mirrored model under its own tag, loaded through the converter.
_WEIGHT_TAGS = {**{name: "in1k" for name in PAPER_VARIANTS}, **{name: "fb_in1k" for name in DEIT_VARIANTS}}
default_cfgs = generate_default_cfgs({
    **{f"{name}.{tag}": dict(_default_cfg(name, VARIANTS[name]), hf_hub_id=f"timm/{timm_reference(name)}.{tag}")
       for name, tag in _WEIGHT_TAGS.items()},
    **{name: _default_cfg(name, config) for name, config in VARIANTS.items() if name not in _WEIGHT_TAGS},
})


def _check_pretrained_source(name: str, overlay: Optional[dict]) -> None:
    """timm's own errors here give no path (a missing file) or try the network; say what to give instead."""
    overlay = overlay or {}
    path = overlay.get("file")
    if path is not None and not Path(path).is_file():
        raise FileNotFoundError(f"no checkpoint at {path} (pretrained_cfg_overlay file=): give the path of a "
                                f"timm or official CrossViT .pth / .safetensors file (for {', '.join(DEIT_VARIANTS)}: "
                                f"a timm ViT / DeiT one)")
    if name not in _WEIGHT_TAGS and not any(overlay.get(k) for k in ("file", "state_dict", "hf_hub_id", "url")):
        raise ValueError(f"{name} has no published weights: give a CrossViT checkpoint with "
                         f"pretrained_cfg_overlay=dict(file=PATH), converted on load")


def _entrypoint(name: str):
    def create(pretrained: bool = False, **kwargs) -> FusionViT:
        if pretrained:
            overlay = dict(kwargs.get("pretrained_cfg_overlay") or {})
            _check_pretrained_source(name, overlay)
            # timm would drop a head of another class count without a word; the filter starts it fresh and says so
            kwargs["pretrained_cfg_overlay"] = {**overlay, "num_classes": kwargs.get("num_classes", 1000)}
        config = dict(VARIANTS[name], **kwargs)
        if len(config["patch_size"]) == 1:
            config.setdefault("fusion", "none")  # the only strategy a single branch takes
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
