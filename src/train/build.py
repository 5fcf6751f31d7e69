"""Builders for one run, each checking its input first: device and precision, model, optimizer, scheduler."""
import logging
import re
from typing import Any, Dict, Optional, Tuple

import timm
import torch
from omegaconf import OmegaConf
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2

import src.models  # noqa: F401  (registers fusionvit_* with timm)
from src.models import fusion_names

log = logging.getLogger(__name__)
# the sched.name values timm's create_scheduler_v2 builds
SCHEDULERS = ("cosine", "tanh", "step", "multistep", "plateau", "poly", "constant", "wsd", "rsqrt")
ARCHITECTURE_KEYS = ("img_size", "img_scale", "patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio",
                     "multi_conv", "class_token")


DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
AMP = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(setting: str) -> torch.device:
    if not DEVICE.match(str(setting)):
        raise ValueError(f"train.device={setting!r} is not a device: pick auto (CUDA when present), cpu, cuda or "
                         f"cuda:N (N a GPU index)")
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={setting} but no CUDA device is visible: use train.device=auto or cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"train.device={setting} but {torch.cuda.device_count()} CUDA device(s) are visible: use "
                         f"cuda:0 to cuda:{torch.cuda.device_count() - 1}, or train.device=cuda")
    return device


def check_amp(setting: str, device: torch.device) -> None:
    """bf16/fp16 only on CUDA (without touching CUDA); ``train.amp``'s choices are the schema's."""
    if AMP.get(setting) is not None and device.type != "cuda":
        raise ValueError(f"train.amp={setting} needs CUDA but this run is on {device}: use train.amp=none or auto")


def resolve_amp(setting: str, device: torch.device) -> Optional[torch.dtype]:
    """Mixed precision on CUDA only: ``auto`` is bf16 where supported, else fp16; none on the CPU."""
    check_amp(setting, device)
    if setting == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return AMP[setting]


def input_size(cfg, model_img_size: int) -> int:
    """The side the images are fed at: the model's (``data.image_size`` null follows it)."""
    size = cfg.data.image_size or model_img_size
    if size != model_img_size:
        raise ValueError(f"data.image_size={size} but {cfg.model.name} takes {model_img_size}x{model_img_size} "
                         f"images: set data.image_size=null (follow the model) or model.img_size={size}")
    return size


def model_kwargs(cfg, num_classes: Optional[int] = None) -> Dict[str, Any]:
    """The keyword arguments of ``timm.create_model`` for ``cfg.model`` and ``cfg.fusion``; ``num_classes``: the
    data's count, where ``data.num_classes`` is null."""
    if cfg.fusion.name not in fusion_names():
        raise ValueError(f"unknown fusion.name={cfg.fusion.name!r}: pick one of {', '.join(fusion_names())}")
    kwargs = {key: OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
              for key in ARCHITECTURE_KEYS if (value := cfg.model[key]) is not None}
    # data.num_classes null and no count given: only the shape check before the data is read (preflight) builds so
    kwargs.update(fusion=cfg.fusion.name, num_classes=num_classes or cfg.data.num_classes or 1000,
                  drop_path_rate=cfg.model.drop_path_rate)
    if cfg.fusion.layers is not None:
        kwargs["fusion_layers"] = cfg.fusion.layers
    if cfg.fusion.options:
        kwargs["fusion_options"] = OmegaConf.to_container(cfg.fusion.options)
    return kwargs


def check_pretrained(cfg) -> None:
    """``model.pretrained``: null (random init), "hub" (the variant's published weights), or a run dir or file
    (``warm_start``); "required" is what a fine-tune preset sets until the command line gives one."""
    if cfg.model.pretrained == "required":
        raise ValueError(f"model.pretrained is required (fine-tuning {cfg.model.name}): give "
                         f"model.pretrained=PATH of a run dir or checkpoint of this harness, or of a timm or official "
                         f"CrossViT checkpoint of this variant, or model.pretrained=hub where the network allows")


def build_model(cfg, num_classes: Optional[int] = None) -> torch.nn.Module:
    return build_started_model(cfg, num_classes)[0]


def build_started_model(cfg, num_classes: Optional[int] = None) -> Tuple[torch.nn.Module, Optional[Dict[str, Any]]]:
    """The model, and where its weights came from (``warm_start.start_from``'s account; None: random init).
    ``num_classes``: the data's count where ``data.num_classes`` is null (follow the data)."""
    if cfg.model.name not in timm.list_models("fusionvit_*"):
        known = ", ".join(timm.list_models("fusionvit_*"))
        raise ValueError(f"unknown model.name={cfg.model.name!r}: pick one of {known}")
    check_pretrained(cfg)
    kwargs = model_kwargs(cfg, num_classes)
    if cfg.model.pretrained == "hub":
        return timm.create_model(cfg.model.name, pretrained=True, **kwargs), {"source": "hub"}
    model = timm.create_model(cfg.model.name, **kwargs)
    if cfg.model.pretrained is None:
        return model, None
    from .warm_start import start_from

    return model, start_from(model, cfg.model.pretrained)


def model_summary(cfg, model: torch.nn.Module) -> Dict[str, Any]:
    """The architecture as built (results.json "model")."""
    kwargs = model_kwargs(cfg)
    depth = kwargs.get("depth")
    return {"name": cfg.model.name, "fusion": cfg.fusion.name, "img_size": model.img_size,
            "patch_size": kwargs.get("patch_size"), "embed_dim": list(model.embed_dim),
            "depth": depth, "num_heads": kwargs.get("num_heads"), "fusion_layers": cfg.fusion.layers,
            "class_token": model.class_token, "num_branches": len(model.embed_dim)}


def learning_rate(cfg) -> float:
    if cfg.optim.lr is not None:
        return cfg.optim.lr
    return cfg.optim.base_lr * cfg.train.batch_size / cfg.optim.lr_base_size


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    # timm skips weight decay on biases, norms and model.no_weight_decay() (cls tokens, position embeddings)
    return create_optimizer_v2(model, opt=cfg.optim.name, lr=learning_rate(cfg),
                               weight_decay=cfg.optim.weight_decay)


def build_scheduler(cfg, optimizer: torch.optim.Optimizer, updates_per_epoch: int) -> Tuple[object, int]:
    """(scheduler, number of epochs to run): timm's count, which adds ``sched.cooldown_epochs`` to
    ``train.epochs`` (warm-up stays inside them), so that the cooldown is trained too."""
    if cfg.train.epochs < 1:
        raise ValueError(f"train.epochs={cfg.train.epochs} must be >= 1")
    return create_scheduler_v2(optimizer, sched=cfg.sched.name, num_epochs=cfg.train.epochs,
                               warmup_epochs=cfg.sched.warmup_epochs, warmup_lr=cfg.sched.warmup_lr,
                               min_lr=cfg.sched.min_lr, cooldown_epochs=cfg.sched.cooldown_epochs,
                               step_on_epochs=cfg.sched.step_on_epochs, updates_per_epoch=updates_per_epoch)
