"""``model.pretrained``: a new run that starts from weights, as distinct from ``train.resume``, which continues the
same job (its optimizer, schedule, data order and record). The weights come from:

- a run dir of this harness: its ``last.pt``, the final weights that its record's ``final`` reports;
- a checkpoint of this harness (``last.pt``, ``best.pt``): its model, with the fusion it trained with (from the
  checkpoint's config, or for older checkpoints the ``results.json`` beside it);
- any other file: a timm or official CrossViT state dict, a timm ViT / DeiT one (one-branch models), or a plain
  state dict in this harness's layout (``torch.save(model.state_dict())``).

Every tensor that fits loads; what does not starts fresh, named with the reason (``src.models.fitting``). The run
then evaluates once before its first step (``StartRecord``, in the record as ``start``): a fine-tune from a run's
own weights starts at that run's top-1."""
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from src.identity import checkpoint_matches
from src.models.convert import read_state_dict
from src.models.pretrained import check_pretrained_file, fit_checkpoint

from .checkpoint import BEST, LAST
from .record_io import RESULTS_FILE, read_results

log = logging.getLogger(__name__)
FIX = ("give model.pretrained=PATH of a run dir or checkpoint of this harness, or of a timm or official CrossViT "
       "checkpoint (a state dict of tensors, .pth or .safetensors), model.pretrained=hub, or null to start from random "
       "weights")


@dataclass
class Weights:
    """A checkpoint's model tensors and what is known of the run that trained them."""
    path: Path
    state_dict: Dict[str, torch.Tensor]
    fusion: Optional[str]  # the fusion it trained with; None: read from its tensors
    config: Optional[Dict[str, Any]]  # a run of this harness: its config


def checkpoint_file(source: str) -> Path:
    """The file ``model.pretrained=source`` names: a run dir means its ``last.pt``. Raises ``ValueError`` naming
    the problem and the fix."""
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / LAST).is_file():
            return path / LAST
        best = f" ({path / BEST} is there: give it to start from the best epoch)" if (path / BEST).is_file() else ""
        raise ValueError(f"model.pretrained={source}: the folder holds no {LAST}{best}; a run dir of this harness has "
                         f"one after its first epoch (unless train.save_checkpoints=false); {FIX}")
    check_pretrained_file(source)
    return path


def read_weights(source: str) -> Weights:
    path = checkpoint_file(source)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return Weights(path, load_file(path), None, None)
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    if not (isinstance(loaded, dict) and "config_hash" in loaded and "model" in loaded):
        return Weights(path, read_state_dict(loaded, "pretrained"), None, None)
    config = loaded.get("config") or config_beside(path, loaded["config_hash"])
    fusion = ((config or {}).get("fusion") or {}).get("name")
    return Weights(path, loaded["model"], fusion, config)


def record_beside(path: Path) -> Dict[str, Any]:
    """The ``results.json`` of the run dir a checkpoint is in, or {} (none there, or unreadable)."""
    try:
        record = read_results(path.parent) if (path.parent / RESULTS_FILE).is_file() else {}
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def config_beside(path: Path, config_hash: str, record: Optional[Dict[str, Any]] = None) -> Optional[Dict[str, Any]]:
    """An older checkpoint records only its config's hash: the config of the ``results.json`` beside it (``record``,
    where already read), when that is the same job."""
    config = (record_beside(path) if record is None else record).get("config")
    return config if isinstance(config, dict) and checkpoint_matches(config_hash, config) else None


def start_from(model: torch.nn.Module, source: str) -> Dict[str, Any]:
    """Loads ``source``'s weights into ``model`` (what fits; the rest stays fresh); logs and returns what happened,
    for the record's ``start``."""
    weights = read_weights(source)
    fit = fit_checkpoint(weights.state_dict, model, weights.fusion)
    model.load_state_dict(fit.weights)
    log.info("%s", fit.summary(str(weights.path)))
    return {"source": str(weights.path), "loaded": fit.loaded, "fresh": fit.fresh_lines(),
            "unused": len(fit.unused)}


HUB_WAIT_S = 3.0  # long enough for a reachable hub to answer, short enough that an offline start fails at once


def check_hub(model_name: str) -> None:
    """``model.pretrained=hub`` where the weights can come: in timm's cache (Hugging Face's), or from a hub that
    answers within ``HUB_WAIT_S`` (offline, timm would retry for about a minute before failing)."""
    import socket
    from urllib.parse import urlparse

    import timm
    from huggingface_hub import constants, try_to_load_from_cache

    import src.models  # noqa: F401  (registers the variants' pretrained configs)

    hub_id = timm.models.get_pretrained_cfg(model_name).hf_hub_id
    if not hub_id:
        raise ValueError(f"model.pretrained=hub: {model_name} has no published weights; give model.pretrained=PATH "
                         f"of a CrossViT checkpoint or of a run of this harness")
    cached = [try_to_load_from_cache(hub_id, name) for name in ("model.safetensors", "pytorch_model.bin")]
    if any(isinstance(path, str) for path in cached):
        return
    endpoint = urlparse(constants.ENDPOINT)
    fix = (f"download {hub_id} (model.safetensors) where the network allows, then give model.pretrained=PATH of that "
           f"file")
    if constants.HF_HUB_OFFLINE:
        raise ValueError(f"model.pretrained=hub: HF_HUB_OFFLINE is set and {hub_id} is not in the cache; {fix}")
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or (443 if endpoint.scheme == "https" else 80)),
                                 timeout=HUB_WAIT_S).close()
    except OSError as error:
        raise ValueError(f"model.pretrained=hub: {endpoint.netloc} does not answer ({error.strerror or error}) and "
                         f"{hub_id} is not in the cache; {fix}") from error
