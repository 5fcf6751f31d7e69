"""Initialisation by part, for common random numbers: every module's weights come from a generator seeded with
(the model's seed, the module's qualified name), so two configurations built with the same global seed start
every part they share (patch embeddings, branch blocks, norms, heads, CLS tokens, position embeddings) from the
same values, whatever fusion sits between the branches and however many fusion layers it has. A seed-paired
difference between two fusions then carries the fusion's effect, not init noise (issue 25: with one global
stream, the fusion modules' draws shifted every later branch's weights).

The values follow timm's CrossVit init (truncated normal, std 0.02, for Linear weights, CLS tokens and position
embeddings; LayerNorm to identity) and PyTorch's default for convolutions; only where they come from changes."""
import hashlib
import math
from functools import partial

import torch
import torch.nn as nn

TOKEN_STD = 0.02  # timm's CrossVit: trunc_normal_(std=.02) for Linear weights, cls_token and pos_embed


def draw_model_seed() -> int:
    """One draw from the global generator, taken before any module is built: the same under the same
    ``torch.manual_seed`` whatever the model, and the only draw the init depends on."""
    return int(torch.randint(0, 2 ** 62, (), dtype=torch.int64, device="cpu"))  # also under a meta-device context


def part_generator(seed: int, name: str) -> torch.Generator:
    digest = hashlib.blake2b(f"{seed}/{name}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2 ** 63 - 1))


def _fill(tensor: torch.Tensor, draw) -> None:
    """``draw(cpu_tensor)`` in place; drawn on the CPU so that a tensor gets the same values on every device,
    skipped on the meta device (counting parameters needs no values)."""
    if tensor.is_meta:
        return
    with torch.no_grad():
        values = torch.empty(tensor.shape, dtype=torch.float32)
        draw(values)
        tensor.copy_(values)


def init_module(module: nn.Module, generator: torch.Generator) -> None:
    if isinstance(module, nn.Linear):
        _fill(module.weight, lambda t: nn.init.trunc_normal_(t, std=TOKEN_STD, generator=generator))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
        nn.init.ones_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):  # PyTorch's reset_parameters, from this module's own generator
        _fill(module.weight, lambda t: nn.init.kaiming_uniform_(t, a=math.sqrt(5), generator=generator))
        if module.bias is not None:
            fan_in = module.weight[0].numel()
            bound = 1 / math.sqrt(fan_in) if fan_in else 0.0
            _fill(module.bias, lambda t: nn.init.uniform_(t, -bound, bound, generator=generator))


def init_by_part(model: nn.Module, seed: int, token_parameters=("cls_token", "pos_embed")) -> None:
    """Every Linear, LayerNorm and Conv2d of ``model`` from its own generator, and each parameter of the
    ``token_parameters`` lists truncated normal from its own. Other parameters (a fusion's gate, say) keep the
    values their module gave them."""
    for name, module in model.named_modules():
        init_module(module, part_generator(seed, name))
    for list_name in token_parameters:
        for index, param in enumerate(getattr(model, list_name)):
            _fill(param, partial(nn.init.trunc_normal_, std=TOKEN_STD,
                                 generator=part_generator(seed, f"{list_name}.{index}")))
