"""Parameter and FLOP counters (torch's FlopCounterMode; reported as GMACs, one MAC = two FLOPs)."""
from typing import Dict, Sequence

import torch
import torch.nn as nn
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode


def _count_cpu_attention() -> None:
    """torch counts the CUDA kernels of ``scaled_dot_product_attention`` but not the CPU one, so on a CPU
    every attention matmul would be missing (all-attention would look linear). Reuse torch's own formulas."""
    aten = torch.ops.aten
    for op, formula in ((getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None), flop_counter.sdpa_flop),
                        (getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None),
                         flop_counter.sdpa_backward_flop)):
        if op is not None and op not in flop_counter.flop_registry:
            flop_counter.flop_registry[op] = formula


_count_cpu_attention()


def count_params(module: nn.Module) -> int:
    """Parameters of any module: a whole model, or one fusion step (``model.encoders[0].fusion``)."""
    return sum(p.numel() for p in module.parameters())


def fusion_modules(model: nn.Module) -> Dict[str, nn.Module]:
    return {f"encoders.{k}.fusion": encoder.fusion for k, encoder in enumerate(model.encoders)}


@torch.no_grad()
def count_flops(model: nn.Module, input_size: Sequence[int], by_module: bool = False):
    """GMACs of one forward pass of a single image of ``input_size`` (C, H, W).

    With ``by_module`` returns ``{"total": ..., "fusion": ..., "encoders.K.fusion": ...}`` so the cost of
    each fusion step can be compared with the whole model's.
    """
    parameter = next(model.parameters())
    images = torch.zeros(1, *input_size, device=parameter.device, dtype=parameter.dtype)
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(images)
    finally:
        model.train(was_training)
    total = counter.get_total_flops() / 2e9
    if not by_module:
        return total
    counts = counter.get_flop_counts()
    prefix = type(model).__name__
    report = {"total": total}
    for name in fusion_modules(model):
        report[name] = sum(counts.get(f"{prefix}.{name}", {}).values()) / 2e9
    report["fusion"] = sum(v for k, v in report.items() if k.startswith("encoders."))
    return report
