"""Starting a ``fusionvit_*`` model from CrossViT weights: timm's ``pretrained_filter_fn`` for our entrypoints.

timm loads the file or hub weights and drops the classifier when ``num_classes`` differs; this filter maps the
keys (``convert_crossvit_state_dict``), resamples the position embeddings to the model's patch grids
(timm's ``resample_abs_pos_embed``), starts a non-cross fusion fresh, and checks every other shape."""
import logging
import math
from typing import Dict, List, Mapping

import timm
import torch
import torch.nn as nn
from timm.layers import resample_abs_pos_embed

from src.variant_table import VARIANTS

from .convert import convert_crossvit_state_dict

_logger = logging.getLogger(__name__)


def _resample_pos_embeds(state_dict: Dict[str, torch.Tensor], model: nn.Module) -> None:
    checkpoint_prefix = 1 if "cls_token.0" in state_dict else 0
    for i, grid in enumerate(model.grid_sizes):
        key = f"pos_embed.{i}"
        if key not in state_dict:
            continue
        pos_embed = state_dict[key]
        if checkpoint_prefix > model.num_prefix_tokens:  # a model without CLS tokens has no CLS position
            pos_embed = pos_embed[:, checkpoint_prefix:]
        side = math.isqrt(pos_embed.shape[1] - model.num_prefix_tokens)
        if side * side + model.num_prefix_tokens == pos_embed.shape[1] and [side, side] != list(grid):
            pos_embed = resample_abs_pos_embed(pos_embed, new_size=list(grid), old_size=[side, side],
                                               num_prefix_tokens=model.num_prefix_tokens)
        state_dict[key] = pos_embed
    if not model.class_token:
        for key in [k for k in state_dict if k.startswith("cls_token.")]:
            del state_dict[key]


def _variants_that_fit(state_dict: Mapping[str, torch.Tensor]) -> List[str]:
    """The registered variants whose branches (everything but fusion, head, position embeddings) fit (``variants``
    has registered the entrypoints by the time a checkpoint is loaded)."""
    def backbone(shapes):
        return {k: tuple(v) for k, v in shapes.items()
                if ".fusion." not in k and not k.startswith(("head.", "pos_embed."))}

    wanted = backbone({k: v.shape for k, v in state_dict.items()})
    widths = tuple(v.shape[0] for k, v in sorted(state_dict.items())
                   if k.startswith("norm.") and k.endswith(".weight"))
    fits = []
    for name in [n for n in timm.list_models("fusionvit_*") if tuple(VARIANTS[n]["embed_dim"]) == widths]:
        with torch.device("meta"):  # shapes only: no memory, no initialisation work
            model = timm.create_model(name)
        if backbone({k: v.shape for k, v in model.state_dict().items()}) == wanted:
            fits.append(name)
    return fits


def _check_shapes(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> None:
    own = model.state_dict()
    problem = None
    for key, tensor in own.items():
        if key.startswith("head."):
            continue  # timm drops the classifier when num_classes differs
        if key not in state_dict:
            problem = f"{key} is missing from the checkpoint"
        elif state_dict[key].shape != tensor.shape:
            problem = (f"{key} has shape {list(state_dict[key].shape)} in the checkpoint and "
                       f"{list(tensor.shape)} in the model")
        if problem:
            break
    if problem is None:
        extra = [k for k in state_dict if k not in own and not k.startswith("head.")]
        if not extra:
            return
        problem = f"{extra[0]} is in the checkpoint but not in the model"
    fits = _variants_that_fit(state_dict)
    hint = (f"it fits {' or '.join(fits)} as registered (no architecture overrides)" if fits
            else "it fits no fusionvit_* variant: is it a CrossViT checkpoint?")
    raise ValueError(f"checkpoint does not fit {model.pretrained_cfg.get('architecture', 'this model')}: {problem}; "
                     f"{hint}")


def adapt_crossvit_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """timm's ``pretrained_filter_fn``: a timm ``crossvit_*`` or official CrossViT state dict for ``model``.

    A fusion other than ``cross`` keeps its own freshly initialised modules (the branches, embeddings and
    norms load); one log line names what started fresh."""
    state_dict = convert_crossvit_state_dict(state_dict)
    own = model.state_dict()
    fresh = []
    if model.fusion_name != "cross":
        state_dict = {k: v for k, v in state_dict.items() if ".fusion." not in k}
        fusion_keys = [k for k in own if ".fusion." in k]
        state_dict.update({k: own[k] for k in fusion_keys})
        encoders = sorted({".".join(k.split(".")[:3]) for k in fusion_keys})
        fresh.append(f"{', '.join(encoders)} (fusion={model.fusion_name}, {len(fusion_keys)} tensors)")
    _resample_pos_embeds(state_dict, model)
    _check_shapes(state_dict, model)
    head = state_dict.get("head.0.weight")
    if head is not None and head.shape[0] != model.num_classes:
        fresh.append(f"head ({model.num_classes} classes, the checkpoint has {head.shape[0]})")
    if fresh:
        _logger.info("pretrained start: fresh %s", "; ".join(fresh))
    return state_dict
