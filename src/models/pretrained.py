"""Starting a ``fusionvit_*`` model from published weights: timm's ``pretrained_filter_fn`` for our entrypoints, and
one branch of a multi-branch model from a single-scale ViT (``load_branch_from_vit``).

timm loads the file or hub weights; this filter maps the keys (``convert_crossvit_state_dict``, or
``convert_vit_state_dict`` for a timm ViT / DeiT on a single-branch model) and fits them to the model
(``fitting.fit_state_dict``): position embeddings resampled to its patch grids, every tensor that fits loaded, the
rest (a head of another class count, another fusion, another width) started fresh and named in one log line."""
import json
import logging
import math
import re
import struct
import zipfile
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Union

import torch
import torch.nn as nn

from .convert import convert_crossvit_state_dict, convert_vit_state_dict, is_vit_state_dict
from .fitting import Fit, fit_state_dict, resample_pos_embeds

_logger = logging.getLogger(__name__)


# the first bytes of torch.save's legacy (pre-zip) format: a pickled magic number; torch reads it weights-only too
LEGACY_TORCH_FILE = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."


def weights_file_problem(path: Path) -> Optional[str]:
    """Why ``torch.load(path, weights_only=True)`` (what timm and the harness load with) would refuse ``path``,
    found without reading its tensors: not a torch.save file, a corrupt one, or one holding pickled code (classes or
    functions, which loading would run); None when it looks loadable. ``.safetensors``: its header must parse."""
    if path.suffix == ".safetensors":
        try:
            with open(path, "rb") as file:
                size = struct.unpack("<Q", file.read(8))[0]
                json.loads(file.read(size))
        except (struct.error, ValueError, MemoryError, OverflowError) as error:
            return f"is not a safetensors file (its header does not parse: {type(error).__name__})"
        return None
    with open(path, "rb") as file:
        head = file.read(len(LEGACY_TORCH_FILE))
    if head == LEGACY_TORCH_FILE:
        return None  # torch checks it while loading; nothing cheaper to do here
    if not zipfile.is_zipfile(path):
        kind = "a plain pickle, which loading would run as code" if head[:1] == b"\x80" else "corrupt, truncated " \
            "or another kind of file"
        return f"is not a torch.save file ({kind})"
    try:
        code = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as error:  # noqa: BLE001 - every unreadable archive gets the same clear message
        return f"is a corrupt torch.save file ({type(error).__name__}: {str(error).strip()[:200]})"
    if code:
        return (f"holds pickled code ({', '.join(code[:3])}), which loading would run: refused (a file of plain "
                f"tensors, as timm, the CrossViT release and this harness save them, holds none)")
    return None


def check_pretrained_file(source: str) -> None:
    """``model.pretrained=PATH`` names a file timm can load weights-only, before any model is built."""
    path = Path(source).expanduser()
    fix = ("give model.pretrained=PATH of a run dir or checkpoint of this harness, or of a timm or official CrossViT "
           "checkpoint (a state dict of tensors, .pth or .safetensors), model.pretrained=hub, or null to start from "
           "random weights")
    if not path.is_file():
        raise ValueError(f"model.pretrained={source}: {'is a folder' if path.is_dir() else 'no such file'}; {fix}")
    problem = weights_file_problem(path)
    if problem:
        raise ValueError(f"model.pretrained={source} {problem}; {fix}")


def branch_blocks(model: nn.Module, branch: int) -> List[str]:
    """Branch ``branch``'s blocks in depth order, ``encoders.K.branches.B.I``: where a ViT's ``blocks.N`` go."""
    return [f"encoders.{k}.branches.{branch}.{i}" for k, encoder in enumerate(model.encoders)
            for i in range(len(encoder.branches[branch]))]


def fit_checkpoint(state_dict: Mapping[str, torch.Tensor], model: nn.Module,
                   source_fusion: Optional[str] = None) -> Fit:
    """A timm ``crossvit_*`` or official CrossViT state dict, one in this harness's own layout, or a timm ViT / DeiT
    one for a single-branch model (``fusionvit_deit_*``), fitted to ``model`` (``fitting.fit_state_dict``: what does
    not fit starts fresh, named with the reason). ``source_fusion``: the fusion it was trained with, where known."""
    if is_vit_state_dict(state_dict):
        if len(model.embed_dim) != 1:
            raise ValueError(f"a single-scale ViT checkpoint cannot start all {len(model.embed_dim)} branches: load it "
                             f"into one with src.models.load_branch_from_vit(model, PATH, branch=...)")
        state_dict = convert_vit_state_dict(state_dict, branch_blocks(model, 0))
    else:
        if source_fusion is None and any(key.startswith("blocks.") for key in state_dict):
            source_fusion = "cross"  # timm's or the official layout: a CrossViT
        state_dict = convert_crossvit_state_dict(state_dict)
    return fit_state_dict(state_dict, model, source_fusion)


def adapt_crossvit_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """timm's ``pretrained_filter_fn`` (``fit_checkpoint``), logging what started fresh."""
    fit = fit_checkpoint(state_dict, model)
    _logger.info("%s", fit.summary("pretrained weights"))
    return fit.weights


def _in_branch(key: str, branch: int) -> bool:
    return re.match(rf"^((cls_token|pos_embed)\.{branch}$|(patch_embed|norm|head)\.{branch}\.|"
                    rf"encoders\.\d+\.branches\.{branch}\.)", key) is not None


def _encoders(keys: List[str]) -> str:
    """``encoders.0-2`` for keys under encoders 0 to 2, for the log line."""
    encoders = sorted({int(key.split(".")[1]) for key in keys})
    return f"encoders.{encoders[0]}" + (f"-{encoders[-1]}" if len(encoders) > 1 else "")


def load_branch_from_vit(model: nn.Module, source: Union[Mapping[str, torch.Tensor], str, Path],
                         branch: int = 1) -> List[str]:
    """Loads a single-scale ViT / DeiT checkpoint (a timm state dict, or its file) into branch ``branch`` of
    ``model``: patch embedding, CLS token, position embedding (timm's ``resample_abs_pos_embed`` where the grids
    differ, e.g. DeiT's 14x14 at 224 px into a branch seeing 240 px), the blocks in order over the encoders (each
    encoder's share of the branch's depth: CrossViT-S's L-branch takes DeiT-S's 12 as 3 x 4), the final norm and
    the head (left fresh when the class counts differ). The other branches and every fusion module keep their
    values. Logs one line naming what loaded and what stayed fresh; returns the loaded keys.

    A checkpoint does not record its head count: the branch should have the ViT's ``num_heads`` (CrossViT-Ti/S/B's
    L-branch, branch 1, has DeiT-Ti/S/B's width, heads, depth and MLP ratio), or the attention is split anew."""
    if not 0 <= branch < len(model.embed_dim):
        raise ValueError(f"branch={branch}: the model has branches 0 to {len(model.embed_dim) - 1}")
    weights, notes = _vit_weights_for_branch(model, source, branch)
    model.load_state_dict(weights, strict=False)
    _logger.info("%s", _branch_summary(model, weights, branch, notes))
    return sorted(weights)


def _vit_weights_for_branch(model: nn.Module, source, branch: int):
    """The checkpoint as branch ``branch``'s tensors, resampled and checked, and notes for the log line."""
    weights = convert_vit_state_dict(source, branch_blocks(model, branch), branch)
    own, notes = model.state_dict(), {}
    pos_key, head_key = f"pos_embed.{branch}", f"head.{branch}.weight"
    if pos_key in weights:
        side = math.isqrt(weights[pos_key].shape[1] - (1 if f"cls_token.{branch}" in weights else 0))
        resample_pos_embeds(weights, model)
        if [side, side] != list(model.grid_sizes[branch]):
            notes["pos"] = f"resampled {side}x{side} -> {'x'.join(map(str, model.grid_sizes[branch]))}"
    head = weights.get(head_key)
    if head is not None and (head_key not in own or own[head_key].shape != head.shape):
        weights = {k: v for k, v in weights.items() if not k.startswith(f"head.{branch}.")}
        notes["head"] = f"{model.num_classes} classes, the checkpoint has {head.shape[0]}"
    for key, tensor in weights.items():
        if key not in own or own[key].shape != tensor.shape:
            shape = list(own[key].shape) if key in own else "no such tensor"
            raise ValueError(f"the ViT checkpoint does not fit branch {branch}: {key} has shape {list(tensor.shape)} "
                             f"in the checkpoint and {shape} in the model; the branch needs the ViT's width, patch "
                             f"size and MLP ratio (it is {model.embed_dim[branch]} wide with "
                             f"{model.patch_embed[branch].patch_size[0]}-pixel patches)")
    missing = [k for k in own if _in_branch(k, branch) and k not in weights and not k.startswith(f"head.{branch}.")]
    if missing:
        raise ValueError(f"the ViT checkpoint has no {missing[0]} for branch {branch}")
    return weights, notes


def _branch_summary(model: nn.Module, weights: Mapping[str, torch.Tensor], branch: int, notes: Dict[str, str]) -> str:
    """One line: what loaded into the branch and what stayed fresh."""
    def noted(name, note):
        return name + (f" ({notes[note]})" if note in notes else "")

    blocks = branch_blocks(model, branch)
    head = f"head.{branch}"
    loaded = [f"patch_embed.{branch}", *([f"cls_token.{branch}"] if model.class_token else []),
              noted(f"pos_embed.{branch}", "pos"), f"{len(blocks)} blocks ({_encoders(blocks)}.branches.{branch})",
              f"norm.{branch}", *([head] if f"{head}.weight" in weights else [])]
    others = [k for k in model.state_dict() if k not in weights]
    fresh = [f"branch {b}" for b in range(len(model.embed_dim))
             if b != branch and any(_in_branch(k, b) for k in others)]
    fusion = [k for k in others if ".fusion." in k]
    if fusion:
        fresh.append(f"the fusion ({_encoders(fusion)}.fusion, fusion={model.fusion_name})")
    if any(k.startswith(f"{head}.") for k in others):
        fresh.append(noted(head, "head"))
    return (f"branch {branch} from a ViT checkpoint: loaded {', '.join(loaded)} ({len(weights)} tensors); "
            f"fresh {', '.join(fresh) or 'nothing'} ({len(others)} tensors)")
