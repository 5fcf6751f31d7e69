"""``train.deterministic``: the same numbers run after run on a GPU, as the CPU gives them anyway.

``apply_determinism`` turns on torch's deterministic algorithms, cuDNN's deterministic kernels without its
benchmark and, on CUDA, a fixed cuBLAS workspace and the math attention kernel (the fused ones, flash,
memory-efficient and cuDNN, add up their backward in no fixed order). Off, it does nothing.
``check_deterministic`` refuses, before any work, a model that would reach an op torch has no deterministic CUDA
kernel for (docs/robustness.md#resume).
"""
import logging
import os
from typing import Dict, Set

import torch
from torch.utils._python_dispatch import TorchDispatchMode

log = logging.getLogger(__name__)

CUBLAS_WORKSPACE = "CUBLAS_WORKSPACE_CONFIG"
DETERMINISTIC_WORKSPACES = (":4096:8", ":16:8")  # what torch accepts with deterministic algorithms on CUDA >= 10.2
FUSED_ATTENTION = ("flash", "mem_efficient", "cudnn")  # torch.backends.cuda's SDPA switches, all but math

# The ops torch.use_deterministic_algorithms' docstring (torch 2.14) lists as raising on CUDA for every argument,
# by their aten names, with what calls them. Those that raise only for some arguments (bincount with weights, median
# with indices, scatter_reduce prod, EmbeddingBag max) are left out: no model here computes them, and torch itself
# still raises at their first call.
NONDETERMINISTIC_ON_CUDA = {
    **{f"upsample_{mode}_backward": f"F.interpolate(mode='{mode[:-2]}')'s backward"
       for mode in ("linear1d", "bilinear2d", "bicubic2d", "trilinear3d")},
    **{f"_upsample_{mode}_aa_backward": f"F.interpolate(mode='{mode[:-2]}', antialias=True)'s backward"
       for mode in ("bilinear2d", "bicubic2d")},
    "avg_pool3d_backward": "AvgPool3d's backward",
    "_adaptive_avg_pool2d_backward": "AdaptiveAvgPool2d's backward",
    "_adaptive_avg_pool3d_backward": "AdaptiveAvgPool3d's backward",
    "adaptive_max_pool2d_backward": "AdaptiveMaxPool2d's backward",
    "fractional_max_pool2d_backward": "FractionalMaxPool2d's backward",
    "fractional_max_pool3d_backward": "FractionalMaxPool3d's backward",
    "max_unpool2d": "MaxUnpool1d/2d",
    "max_unpool3d": "MaxUnpool3d",
    **{f"reflection_pad{n}d_backward": f"ReflectionPad{n}d's backward" for n in (1, 2, 3)},
    "grid_sampler_2d_backward": "F.grid_sample's backward",
    "grid_sampler_3d_backward": "F.grid_sample's backward",
    "nll_loss2d_forward": "NLLLoss over a map (N, C, H, W)",
    "_ctc_loss_backward": "CTCLoss's backward",
    "put_": "Tensor.put_",
    "histc": "torch.histc",
}


def apply_determinism(enabled: bool, device: torch.device) -> None:
    """Deterministic kernels for the rest of the process when ``enabled``; nothing at all otherwise. Call it before
    the first matrix product on the GPU: cuBLAS reads its workspace setting once, at its first call."""
    if not enabled:
        return
    turned_on = ["deterministic algorithms", "cuDNN deterministic, benchmark off"]
    if device.type == "cuda":
        turned_on.append(f"{CUBLAS_WORKSPACE}={set_cublas_workspace()}")
        # not on the CPU: its fused kernel gives the same numbers run after run already (tests/test_resume.py), and
        # switching it off there would only change the numbers and slow the run
        for name in FUSED_ATTENTION:
            getattr(torch.backends.cuda, f"enable_{name}_sdp")(False)
        torch.backends.cuda.enable_math_sdp(True)
        turned_on.append("math attention (flash, memory-efficient and cuDNN attention off)")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    cost = ("slower steps, and attention memory that grows with the square of the tokens" if device.type == "cuda"
            else "nothing in the numbers: the CPU's kernels were deterministic already")
    log.info("train.deterministic: %s; cost: %s (docs/robustness.md#resume)", ", ".join(turned_on), cost)


def set_cublas_workspace() -> str:
    """``CUBLAS_WORKSPACE_CONFIG``, set to ``:4096:8`` where unset; a value torch would refuse is an error now."""
    value = os.environ.get(CUBLAS_WORKSPACE)
    if value is not None:
        if value not in DETERMINISTIC_WORKSPACES:
            raise ValueError(f"train.deterministic=true but {CUBLAS_WORKSPACE}={value}: cuBLAS is deterministic with "
                             f"{' or '.join(DETERMINISTIC_WORKSPACES)} only; unset it (the run sets "
                             f"{DETERMINISTIC_WORKSPACES[0]}) or export one of those")
        return value
    if torch.cuda.is_initialized():  # e.g. torchrun's process group: no cuBLAS call yet, but nothing proves it
        log.warning("train.deterministic: CUDA started before %s was set; it holds only if no matrix product ran on "
                    "the GPU yet in this process: export %s=%s before python to be sure", CUBLAS_WORKSPACE,
                    CUBLAS_WORKSPACE, DETERMINISTIC_WORKSPACES[0])
    os.environ[CUBLAS_WORKSPACE] = DETERMINISTIC_WORKSPACES[0]
    return DETERMINISTIC_WORKSPACES[0]


def current_flags() -> Dict[str, bool]:
    """The process-wide switches ``apply_determinism`` sets, to put back with ``restore_flags`` (a job that shares
    its process with the next one, a test)."""
    return {"algorithms": torch.are_deterministic_algorithms_enabled(),
            "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            **{name: getattr(torch.backends.cuda, f"{name}_sdp_enabled")() for name in (*FUSED_ATTENTION, "math")}}


def restore_flags(flags: Dict[str, bool]) -> None:
    torch.use_deterministic_algorithms(flags["algorithms"], warn_only=flags["warn_only"])
    torch.backends.cudnn.deterministic = flags["cudnn_deterministic"]
    torch.backends.cudnn.benchmark = flags["cudnn_benchmark"]
    for name in (*FUSED_ATTENTION, "math"):
        getattr(torch.backends.cuda, f"enable_{name}_sdp")(flags[name])


class OpRecorder(TorchDispatchMode):
    """The aten ops (their names without overload) run while it is active, backward ones included."""

    def __init__(self):
        super().__init__()
        self.ops: Set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def nondeterministic_ops(cfg) -> Dict[str, str]:
    """The ops of ``NONDETERMINISTIC_ON_CUDA`` that one training step of ``cfg``'s model reaches: a forward and a
    backward pass on the meta device (shapes, no memory, no values), in a fork of the global generator so that the
    run draws as without the check. The loss and the augmentation are not in it: theirs have deterministic CUDA
    kernels (cross-entropy over (N, C) logits, gather, scatter of a value, flips and slices)."""
    import timm

    from .build import model_kwargs

    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = timm.create_model(cfg.model.name, **model_kwargs(cfg))
        images = torch.zeros(2, 3, model.img_size, model.img_size)
        with OpRecorder() as recorder:
            model(images).float().sum().backward()
    return {op: NONDETERMINISTIC_ON_CUDA[op] for op in sorted(recorder.ops & NONDETERMINISTIC_ON_CUDA.keys())}


def check_deterministic(cfg, device_type: str) -> None:
    """``train.deterministic=true`` on CUDA with a model that reaches an op without a deterministic CUDA kernel
    (``fusion=pairwise`` resamples its branches' patch grids with a bilinear interpolation): an error before any
    work. Refused rather than run with torch's ``warn_only``: a run recorded as deterministic that is not would be
    trusted for the bitwise comparisons the key exists for, and the fix is one override."""
    if not cfg.train.deterministic or device_type != "cuda":
        return
    reached = nondeterministic_ops(cfg)
    if reached:
        ops = "; ".join(f"{what} ({op})" for op, what in reached.items())
        raise ValueError(f"train.deterministic=true on CUDA, but model={cfg.model.name} with fusion={cfg.fusion.name} "
                         f"computes {ops}, which has no deterministic CUDA kernel: run it with "
                         f"train.deterministic=false (the same data order and random draws, not bitwise the same "
                         f"numbers), or with train.device=cpu, where it is deterministic")
