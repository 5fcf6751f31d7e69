"""Which tensors of a checkpoint a model can take (``fit_state_dict``): every one that fits loads, the rest of the
model keeps its fresh initialisation, and the ``Fit`` names what started fresh and why: the class count (a head),
the fusion (another strategy's tensors never load into this one, even where names and shapes agree: pairwise's and
cls_token's projections do), a branch's width, or a tensor the checkpoint does not have (a deeper model).

A checkpoint none of whose branch tensors fits is another model: that is an error naming a tensor, both shapes and
the registered variants the checkpoint fits."""
import math
import re
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import timm
import torch
import torch.nn as nn
from timm.layers import resample_abs_pos_embed

from src.variant_table import VARIANTS

_BRANCH = re.compile(r"^(?:(?:cls_token|pos_embed)\.(\d+)$|(?:patch_embed|norm|head)\.(\d+)\.|"
                     r"encoders\.\d+\.branches\.(\d+)\.)")
SHOWN = 4  # module names listed for one reason


@dataclass
class Fit:
    """A checkpoint fitted to a model. ``weights`` is a whole state dict for a strict load: the checkpoint's tensors
    where they fit, the model's own (fresh) elsewhere. ``fresh`` maps each reason to the tensors it covers."""
    weights: Dict[str, torch.Tensor]
    loaded: int
    fresh: Dict[str, List[str]] = field(default_factory=dict)
    unused: List[str] = field(default_factory=list)  # checkpoint tensors the model has no place for

    def fresh_lines(self) -> List[str]:
        """``"head.0, head.1 (2 tensors): 10 classes, the checkpoint has 1000"``, one a reason."""
        return [f"{modules(keys)} ({len(keys)} tensors): {reason}" for reason, keys in self.fresh.items()]

    def summary(self, source: str) -> str:
        total = self.loaded + sum(len(keys) for keys in self.fresh.values())
        line = f"start from {source}: loaded {self.loaded} of {total} tensors"
        line += "; fresh " + "; ".join(self.fresh_lines()) if self.fresh else "; nothing fresh"
        if self.unused:
            line += f"; unused from the checkpoint: {modules(self.unused)} ({len(self.unused)} tensors)"
        return line


def modules(keys: List[str]) -> str:
    """The modules the tensor names belong to, a few named: ``encoders.0.fusion, encoders.1.fusion``."""
    names = []
    for key in keys:
        parts = key.split(".")
        if parts[0] == "encoders":
            name = ".".join(parts[:3 if parts[2] == "fusion" else 4])
        else:
            name = key if parts[-1].isdigit() else ".".join(parts[:2])  # cls_token.0; patch_embed.0, norm.0
        if name not in names:
            names.append(name)
    return ", ".join(names[:SHOWN]) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def branch_of(key: str) -> Optional[int]:
    match = _BRANCH.match(key)
    return next((int(group) for group in match.groups() if group is not None), None) if match else None


def resample_pos_embeds(state_dict: Dict[str, torch.Tensor], model: nn.Module) -> None:
    """Each branch's position embedding resampled to the model's patch grid (timm's ``resample_abs_pos_embed``);
    a CLS position dropped for a model without CLS tokens."""
    for i, grid in enumerate(model.grid_sizes):
        key = f"pos_embed.{i}"
        if key not in state_dict:
            continue
        checkpoint_prefix = 1 if f"cls_token.{i}" in state_dict else 0  # a ViT checkpoint fills one branch alone
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


def fusion_of(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> Optional[str]:
    """The checkpoint's fusion as far as its tensors tell: none when it has no fusion tensors, the model's own when
    its fusion tensors are exactly the model's (names and shapes), else None (unknown, and not the model's)."""
    theirs = {k: tuple(v.shape) for k, v in state_dict.items() if ".fusion." in k}
    if not theirs:
        return "none"
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items() if ".fusion." in k}
    return model.fusion_name if theirs == ours else None


def _width(state_dict: Mapping[str, torch.Tensor], branch: int) -> Optional[int]:
    norm = state_dict.get(f"norm.{branch}.weight")
    return None if norm is None else norm.shape[0]


def _reason(key: str, own: torch.Tensor, state_dict: Mapping[str, torch.Tensor], model: nn.Module,
            source_fusion: Optional[str]) -> Optional[str]:
    """Why ``key`` cannot load, or None when it can."""
    if ".fusion." in key and source_fusion != model.fusion_name:
        theirs = f"the checkpoint's is {source_fusion}" if source_fusion else "the checkpoint's fusion tensors are " \
                                                                              "another strategy's"
        return f"fusion={model.fusion_name}, {theirs}"
    if key not in state_dict:
        return "not in the checkpoint"
    if state_dict[key].shape == own.shape:
        return None
    if key.startswith("head.") and state_dict[key].shape[0] != own.shape[0]:
        return f"{model.num_classes} classes, the checkpoint has {state_dict[key].shape[0]}"
    branch = branch_of(key)
    if branch is not None and _width(state_dict, branch) not in (None, model.embed_dim[branch]):
        return f"branch {branch} is {model.embed_dim[branch]} wide, {_width(state_dict, branch)} in the checkpoint"
    theirs = [_width(state_dict, b) for b in range(len(model.embed_dim))]
    if branch is None and None not in theirs and tuple(theirs) != tuple(model.embed_dim):  # a fusion's projections
        return (f"the branches are {'/'.join(map(str, model.embed_dim))} wide, {'/'.join(map(str, theirs))} in the "
                f"checkpoint")
    return f"shape {list(own.shape)} here, {list(state_dict[key].shape)} in the checkpoint"


def fit_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module,
                   source_fusion: Optional[str] = None) -> Fit:
    """``state_dict`` (in this model's key layout) fitted to ``model``; ``source_fusion``: the fusion the checkpoint
    was trained with where known (a run of this harness records it), else read from its tensors (``fusion_of``)."""
    state_dict = dict(state_dict)
    resample_pos_embeds(state_dict, model)
    if source_fusion is None:
        source_fusion = fusion_of(state_dict, model)
    weights, fresh, loaded = {}, {}, 0
    for key, own in model.state_dict().items():
        reason = _reason(key, own, state_dict, model, source_fusion)
        if reason is None:
            weights[key], loaded = state_dict[key], loaded + 1
        else:
            weights[key] = own
            fresh.setdefault(reason, []).append(key)
    started_fresh = {key for keys in fresh.values() for key in keys}
    if all(k in started_fresh for k in weights if not k.startswith("head.") and ".fusion." not in k):
        raise ValueError(another_model(state_dict, model))
    other_fusion = source_fusion != model.fusion_name  # its tensors are named once, as the fusion's reason
    unused = [k for k in state_dict if k not in weights and not (other_fusion and ".fusion." in k)]
    return Fit(weights, loaded, fresh, unused)


def another_model(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> str:
    """The error for a checkpoint none of whose branch tensors fits: one tensor, both shapes, what it fits."""
    own = model.state_dict()
    key = next((k for k in own if not k.startswith("head.") and ".fusion." not in k and k in state_dict), None)
    problem = (f"{key} has shape {list(state_dict[key].shape)} in the checkpoint and {list(own[key].shape)} in the "
               f"model" if key else "it has none of the model's tensors")
    fits = variants_that_fit(state_dict)
    hint = (f"it fits {' or '.join(fits)} as registered (no architecture overrides)" if fits
            else "it fits no fusionvit_* variant: is it a CrossViT (or, for one branch, a ViT) checkpoint?")
    return (f"checkpoint does not fit {model.pretrained_cfg.get('architecture', 'this model')}: none of its branch "
            f"tensors fits ({problem}); {hint}")


def variants_that_fit(state_dict: Mapping[str, torch.Tensor]) -> List[str]:
    """The registered variants whose branches (everything but fusion, head, position embeddings) fit (``variants``
    has registered the entrypoints by the time a checkpoint is loaded)."""
    def backbone(shapes) -> Dict[str, Tuple[int, ...]]:
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
