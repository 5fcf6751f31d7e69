"""What ``src.bench.gpu_check`` runs: its steps in order, each a command, a time cap, an environment and the
reader of the figures it leaves under ``--out``; the sizes of the real check (``FULL``) and of the tests' toy
one (``TINY``), which runs the same steps."""
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from src.bench.model_matrix import read_matrix

# Per-step caps (s) on one H100 with 16 CPU cores; in brackets the time expected, from published rates and this
# repo's CPU timings (docs/benchmarks.md#the-one-shot-gpu-check). Sum 420 s = 7 minutes.
CAPS_S = {
    "jpegs": 20,  # [~10] 5,632 JPEGs at ~20 ms each on one core (measured here), over 16 processes
    "ceiling": 15,  # [~6] import + CUDA start; 3 x 10 products of 1.1 TFLOP at ~600-700 TFLOP/s: 0.05 s
    "models_eager": 45,  # [~25] ~10 s of start; 8 configurations x 20 steps per model and mode, the slowest
    # (small, fp32, batch 128: 4.3 TFLOP a step at ~35 TFLOP/s without TF32) ~0.12 s a step
    "throughput": 30,  # [~15] Hydra + model builds; 110 passes of DeiT-S/CrossViT-S at batch 64, ~2 s each in fp32
    "loader": 30,  # [~20] 1, 8 and 15 workers over 9-23 batches of 64 at ~250 img/s per core, both pipelines
    "run_eager": 40,  # [~25] start, 15 workers, 2 x 5,120 images at the ~4,000 img/s 15 workers decode
    "run_compiled": 130,  # [~80] the eager run plus compiling the train and eval graphs (~30-50 s each)
    "models_compiled": 110,  # [~120 for the first configuration] 4 compiles each (ours and timm, train and
    # infer); it also takes what the steps before it left of the budget, and names the configurations not reached
}
TAKES_THE_REST = "models_compiled"  # the last, and it keeps each configuration when done: any time left goes to it
STEPS = tuple(CAPS_S)
JPEG_STEPS = ("loader", "run_eager", "run_compiled")  # the steps that read the JPEGs
COMPILED_STEPS = ("run_compiled", "models_compiled")
TORCH_LOGS = "recompiles,graph_breaks"


@dataclass(frozen=True)
class Sizes:
    # 5,120 training JPEGs: 40 steps of 128 an epoch, over twice the ~15 batches with which 15 workers start an
    # epoch together, so the last epoch has a steady stretch; 2 epochs take ~3 s of decoding on 16 cores. 512
    # validation images: 2 evaluation batches of 256, no short batch for the compiled run to recompile for.
    train_images: int = 5120
    val_images: int = 512
    image_wh: str = "500x375"  # ImageNet's average JPEG (src.bench.loader)
    classes: int = 4
    variants: Tuple[str, ...] = ("fusionvit_9_240", "fusionvit_small_240")
    precisions: str = "bf16,fp32"  # bf16 first: the compiled step may not reach fp32
    model_batch: int = 128
    repeats: int = 9
    warmup: int = 2
    compiled_repeats: int = 5
    matmul_n: int = 8192
    rows: Tuple[str, ...] = ("DeiT-S", "CrossViT-S")
    throughput_dtypes: str = "fp32,bf16"
    throughput_batch: int = 64  # the paper's
    throughput_iterations: int = 100  # the paper's
    throughput_warmup: int = 10
    loader_workers: Optional[Tuple[int, ...]] = None  # None: 1, half the CPUs, all but one (a run's data.num_workers)
    loader_batch: int = 64
    loader_batches: int = 8
    decode_files: int = 128
    run_model: str = "fusionvit_9_240"
    run_amp: str = "bf16"
    run_batch: int = 128
    run_epochs: int = 2
    compile_disabled: bool = False  # TORCH_COMPILE_DISABLE=1: the compiled steps' plumbing without compiling
    # OMP_NUM_THREADS for every step (None: torch's default, every core). One on a shared 2-core test machine: two
    # threads there, with another process on the other core, spin at each barrier (0.7 s a forward instead of 5 ms)
    threads: Optional[int] = None


FULL = Sizes()
# The same steps on 2 CPU cores in about a minute: a 32 px proxy model, a few 64x48 JPEGs, one repeat, no compiling
# (inductor on 2 cores takes minutes per graph).
TINY = Sizes(train_images=16, val_images=8, image_wh="64x48", classes=2, variants=("fusionvit_micro_32",),
             precisions="fp32", model_batch=4, repeats=1, warmup=0, compiled_repeats=1, matmul_n=128,
             rows=("DeiT-Ti",), throughput_dtypes="fp32", throughput_batch=2, throughput_iterations=1,
             throughput_warmup=0, loader_workers=(0, 1), loader_batch=4, loader_batches=1, decode_files=8,
             run_model="fusionvit_micro_32", run_amp="none", run_batch=4, compile_disabled=True, threads=1)


@dataclass
class Step:
    name: str
    command: List[str]
    cap_s: float
    env: Dict[str, str] = field(default_factory=dict)
    read_figures: Callable[[], Any] = lambda: None
    torch_logs: bool = False  # count the recompiles and graph breaks in its output
    takes_the_rest: bool = False  # its cap is at least what is left of the budget


@dataclass(frozen=True)
class Plan:
    out: Path
    device: str
    sizes: Sizes
    caps: Dict[str, float]

    @property
    def jpegs(self) -> Path:
        return self.out / "jpegs"


def loader_workers(sizes: Sizes) -> List[int]:
    if sizes.loader_workers is not None:
        return list(sizes.loader_workers)
    cpus = len(os.sched_getaffinity(0))
    return sorted({1, max(1, cpus // 2), max(1, cpus - 1)})


def read_json(path: Path, key: Optional[str] = None) -> Any:
    """The file's content (its ``key``), or None where the step left none."""
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return content.get(key) if key else content


def run_figures(run_dir: Path) -> Optional[dict]:
    """The last epoch of a ``src.run``: the steady state after the first epoch's start-up."""
    results = read_json(run_dir / "results.json")
    if results is None:
        return None
    history = results.get("history") or []
    last = history[-1] if history else {}
    provenance = results.get("provenance") or {}
    return {"status": results.get("status"), "reason": results.get("reason"), "epochs": len(history),
            **{key: last.get(key) for key in ("images_per_s", "epoch_time_s", "data_wait_frac", "top1")},
            "peak_memory_mb": provenance.get("peak_memory_mb"), "device": provenance.get("device"),
            "wall_time_s": results.get("wall_time_s")}


def python(module: str, *args) -> List[str]:
    return [sys.executable, "-m", module, *(str(arg) for arg in args)]


def models_command(plan: Plan, compile_: bool, path: Path) -> List[str]:
    s = plan.sizes
    return python("src.bench.model_matrix", "--variants", ",".join(s.variants), "--precisions", s.precisions,
                  "--compile", "on" if compile_ else "off", "--batch", s.model_batch,
                  "--repeats", s.compiled_repeats if compile_ else s.repeats, "--warmup", s.warmup,
                  "--device", plan.device, "--out", path)


def run_command(plan: Plan, compile_: bool, run_dir: Path) -> List[str]:
    s = plan.sizes
    return python("src.run", "data=imagefolder", f"data.root={plan.jpegs}",
                  "recipe=crossvit_imagenet",  # the paper's ImageNet recipe, its batch and epochs set here
                  "data.num_workers=null",  # auto: the CPUs this rank has, one kept (src.data.resolve_workers)
                  f"model={s.run_model}", f"train.amp={s.run_amp}", f"train.device={plan.device}",
                  f"train.compile={str(compile_).lower()}", f"train.epochs={s.run_epochs}",
                  f"train.batch_size={s.run_batch}", "sched.warmup_epochs=0",  # speed, not accuracy: no warm-up
                  "logger=none", "train.save_checkpoints=false",
                  "train.progress=log", "train.force=true", f"hydra.run.dir={run_dir}")


def bench_command(plan: Plan, *args) -> List[str]:
    return python("src.bench", "--device", plan.device, "--matmul-n", plan.sizes.matmul_n, "--profile", "off",
                  "--out", plan.out / "bench", *args)


def step_env(sizes: Sizes, compiled: bool) -> Dict[str, str]:
    env = {"OMP_NUM_THREADS": str(sizes.threads)} if sizes.threads else {}
    if compiled:
        env["TORCH_LOGS"] = TORCH_LOGS
        if sizes.compile_disabled:
            env["TORCH_COMPILE_DISABLE"] = "1"
    return env


def plan_steps(plan: Plan) -> List[Step]:
    s, out = plan.sizes, plan.out
    rows = [arg for row in s.rows for arg in ("--row", row)]
    commands = {
        "jpegs": (python("src.bench.jpegs", "--root", plan.jpegs, "--train", s.train_images, "--val",
                         s.val_images, "--classes", s.classes, "--size", s.image_wh),
                  lambda: read_json(plan.jpegs / "jpegs.json")),
        "ceiling": (python("src.bench.ceiling", "--device", plan.device, "--n", s.matmul_n, "--out",
                           out / "ceiling.json"), lambda: read_json(out / "ceiling.json")),
        "models_eager": (models_command(plan, False, out / "models_eager.jsonl"),
                         lambda: read_matrix(out / "models_eager.jsonl")),
        "throughput": (bench_command(plan, "--name", "throughput", "--parts", "throughput", *rows,
                                     "--throughput-dtype", s.throughput_dtypes, "--throughput-batch",
                                     s.throughput_batch, "--throughput-iterations", s.throughput_iterations,
                                     "--throughput-warmup", s.throughput_warmup),
                       lambda: read_json(out / "bench" / "throughput.json", "throughput")),
        "loader": (bench_command(plan, "--name", "loader", "--parts", "loader", "--loader-root", plan.jpegs,
                                 "--loader-existing", "--loader-pipeline", "uint8", "--loader-workers",
                                 ",".join(map(str, loader_workers(s))), "--loader-batch", s.loader_batch,
                                 "--loader-batches", s.loader_batches, "--loader-decode-files", s.decode_files),
                   lambda: read_json(out / "bench" / "loader.json", "loader")),
        "run_eager": (run_command(plan, False, out / "run_eager"), lambda: run_figures(out / "run_eager")),
        "run_compiled": (run_command(plan, True, out / "run_compiled"), lambda: run_figures(out / "run_compiled")),
        "models_compiled": (models_command(plan, True, out / "models_compiled.jsonl"),
                            lambda: read_matrix(out / "models_compiled.jsonl")),
    }
    steps = []
    for name in STEPS:
        command, reader = commands[name]
        compiled = name in COMPILED_STEPS
        steps.append(Step(name, command, plan.caps[name], env=step_env(s, compiled), read_figures=reader,
                          torch_logs=compiled,
                          takes_the_rest=name == TAKES_THE_REST and plan.caps[name] == CAPS_S[name]))  # no --cap
    return steps
