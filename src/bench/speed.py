"""Model speed: ours vs timm, same config and weights, interleaved timed repeats."""
import statistics
from contextlib import nullcontext
from typing import Callable, Dict, Optional

import timm
import torch
from timm.models.crossvit import CrossVit
from torch.utils.benchmark import Timer

import src.models  # noqa: F401  (registers fusionvit_*)
from src.bench import ceiling
from src.models import VARIANTS, convert_crossvit_state_dict, count_flops
from src.train.process import peak_memory_mb, reset_peak_memory


def build_pair(variant: str, num_classes: int = 1000):
    """timm CrossVit and our ``variant`` (fusion='cross') with the same weights."""
    cfg = VARIANTS[variant]
    timm_model = CrossVit(num_classes=num_classes, **cfg)
    ours = timm.create_model(variant, fusion="cross", num_classes=num_classes)
    ours.load_state_dict(convert_crossvit_state_dict(timm_model.state_dict()))
    return ours, timm_model, cfg["img_size"]


def matmul_gflops(device: str, n: int = 2048, repeats: int = 5) -> float:
    """The ceiling: an n x n matmul in the dtype the model runs in (fp32 on CPU, bf16 under CUDA autocast). On
    CUDA several products timed by CUDA events (``src.bench.ceiling``): one product alone is launch-bound there."""
    if device.startswith("cuda"):
        return statistics.median(ceiling.matmul_rounds(device, n, "bf16", repeats=repeats)) / 1e9
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    times = [timed_seconds(lambda: a @ b) for _ in range(repeats + 1)]
    return 2 * n**3 / statistics.median(times[1:]) / 1e9


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_seconds(step: Callable[[], object], num_threads: Optional[int] = None) -> float:
    """Seconds of one call of ``step``, timed by ``torch.utils.benchmark.Timer`` (which synchronises CUDA and runs
    with ``num_threads`` torch threads, by default the current count). ``blocked_autorange(min_run_time=0)``
    is one untimed call (its block-size estimate, always one call here) then one timed block of one call, so a
    caller's repeats stay single steps, each reported alone (medians, fastest-of and per-repeat ratios)."""
    timer = Timer(stmt="step()", globals={"step": step}, num_threads=num_threads or torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=0).times[0]


def make_steps(model, img, batch, device, amp, compile_, num_classes=1000, lr=1e-4, backend="inductor"):
    """A training step (forward, cross-entropy, backward, AdamW) and an inference step on one fixed batch;
    ``backend``: torch.compile's, when ``compile_``."""
    x = torch.randn(batch, 3, img, img, device=device)
    y = torch.randint(0, num_classes, (batch,), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    fwd = torch.compile(model, backend=backend) if compile_ else model
    device_type = torch.device(device).type
    ctx = (lambda: torch.autocast(device_type, dtype=torch.bfloat16)) if amp else nullcontext

    def train():
        model.train()
        with ctx():
            loss = torch.nn.functional.cross_entropy(fwd(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer():
        model.eval()
        with torch.inference_mode(), ctx():
            fwd(x)
    return train, infer


def warm_up(steps: Dict[str, Callable[[], object]], warmup: int, device: str) -> Dict[str, dict]:
    """Each model's untimed steps (compiling happens here), and the peak memory over them: the counters reset
    before each model, so each peak is that model's step. The other model's weights and optimizer state stay
    resident and count in it: ``resident_mb``, what was allocated when the counters were reset (CUDA)."""
    memory = {}
    for name, step in steps.items():
        _sync(device)
        resident = torch.cuda.memory_allocated(device) / 2**20 if device.startswith("cuda") else None
        reset_peak_memory()
        for _ in range(max(warmup, 1)):  # one step at least: the peak needs a step
            step()
        _sync(device)
        memory[name] = {"peak_memory_mb": peak_memory_mb(device), "resident_mb": resident}
    return memory


def time_interleaved(steps: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, list]:
    times = {name: [] for name in steps}
    for _ in range(repeats):  # interleaved so machine noise hits both alike
        for name, step in steps.items():
            times[name].append(timed_seconds(step))
    return times


def bench_models(variant="fusionvit_9_240", batch=32, repeats=5, warmup=2, compile_=False, device="cpu",
                 amp: Optional[bool] = None, backend: str = "inductor"):
    """Ours vs timm, train and infer; ``amp``: bf16 autocast (None: on CUDA only, as the GPU check runs it).
    Peak memory per model and mode (``warm_up``); on the CPU the process's peak resident set, reset likewise."""
    ours, theirs, img = build_pair(variant)
    gmacs = count_flops(ours, (3, img, img))
    amp = device.startswith("cuda") if amp is None else amp
    models = {"ours": ours.to(device), "timm": theirs.to(device)}
    out = {"variant": variant, "batch": batch, "compile": compile_, "device": device, "amp_bf16": amp,
           "threads": torch.get_num_threads(), "repeats": repeats, "gmacs_per_image": gmacs,
           "compile_backend": backend if compile_ else None}
    for mode in ("train", "infer"):
        steps = {name: make_steps(m, img, batch, device, amp, compile_, backend=backend)[0 if mode == "train" else 1]
                 for name, m in models.items()}
        memory = warm_up(steps, warmup, device)
        times = time_interleaved(steps, repeats)
        res = {name: batch / statistics.median(ts) for name, ts in times.items()}
        # Each repeat times ours and timm back to back: the spread of their per-repeat ratios is the noise.
        pair_ratios = sorted(t / o for o, t in zip(times["ours"], times["timm"]))
        quartiles = statistics.quantiles(pair_ratios, n=4) if len(pair_ratios) > 1 else pair_ratios * 3
        flops_per_img = 2 * gmacs * 1e9 * (3 if mode == "train" else 1)
        out[mode] = {"ours_img_s": res["ours"], "timm_img_s": res["timm"], "ratio": res["ours"] / res["timm"],
                     "ratio_iqr": [quartiles[0], quartiles[2]], "times_s": times, "memory": memory,
                     "ours_gflops": flops_per_img * res["ours"] / 1e9,
                     "timm_gflops": flops_per_img * res["timm"] / 1e9}
    peaks = [m["peak_memory_mb"] for mode in ("train", "infer") for m in out[mode]["memory"].values()]
    out["peak_memory_mb"] = max(peaks)
    out["peak_memory_source"] = ("torch.cuda.max_memory_allocated" if device.startswith("cuda")
                                 else "getrusage ru_maxrss, reset through /proc/self/clear_refs")
    return out


def profile_train_step(variant="fusionvit_9_240", batch=32, device="cpu", steps=2, rows=15) -> str:
    """torch.profiler's top operators (self time) of our eager training step: what limits a missed target."""
    from torch.profiler import ProfilerActivity, profile

    ours, _, img = build_pair(variant)
    train, _ = make_steps(ours.to(device), img, batch, device, device.startswith("cuda"), False)
    train()  # warm-up outside the profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            train()
        _sync(device)
    key = "self_cuda_time_total" if device.startswith("cuda") else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)
