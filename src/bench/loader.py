"""The loader's own speed: images/s of the harness's ImageNet train and eval pipelines on this machine's CPU, and
from them the DataLoader workers a training step rate needs: ``python -m src.bench --parts loader``.

A fast model is only as fast as the JPEGs reach it: every image is decoded, augmented (train: RandomResizedCrop,
RandAugment, random erasing) or resized and cropped (eval), and normalised on the CPU, in DataLoader workers.
The pipelines are the harness's own, built as a run builds them: ``src.data.build_transforms`` on the
``data=imagenet`` config composed through the config tree, image size the model's (240 for CrossViT), over
``src.data.folders.image_folders``. The images are written here: ImageNet-like JPEGs (500x375, about 110 KB) of
smooth random content plus noise, in ``root/{train,val}/<class>/*.jpg``. They lie in the page cache, so disk reads
are not part of the figures: this is the CPU cost of decoding and transforming.

Each worker count is timed over a fixed number of batches after one warm-up batch per worker (one in the main
process for 0 workers): each worker's first batch carries its start-up, which is reported apart and kept out of
the rate. Raw decode speed per core of PIL (what ImageFolder uses) and of ``torchvision.io.decode_jpeg`` is
measured on the same files, to see whether a decoder we already depend on beats PIL (and whether it is still kept:
a deprecation notice it gives is reported). GPU decoders (DALI, nvJPEG) need a GPU and are not measured here.

``pipeline="uint8"`` (``--loader-pipeline uint8``) times what a CUDA run's workers do: ``build_transforms(...,
prefetch=True)``, whose pipelines stop at uint8 tensors (no normalisation, no random erasing: ``src.data.prefetch``
does those on the GPU), so that workers hand a quarter of the bytes to the training process. ``"float"``, the
default, is the CPU run's pipeline. ``existing=True`` times JPEGs already under ``root`` (``src.bench.gpu_check``
writes them first) instead of writing new ones."""
import math
import os
import statistics
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler

from src.train.provenance import cpu_device_name

ROOT = Path(__file__).resolve().parents[2]
MODEL = "fusionvit_tiny_240"
# timm's results/benchmark-train-amp-nchw-pt112-cu113-rtx3090.csv: crossvit_tiny_240, 1349.19 train samples/s.
TARGET_IMG_S = 1350.0
TARGET_SOURCE = ("timm's published crossvit_tiny_240 AMP training speed on one RTX 3090 (1349 img/s, batch 512, "
                 "timm results/benchmark-train-amp-nchw-pt112-cu113-rtx3090.csv)")
# ImageNet's JPEGs average about 110 KB at around 500x375; quality 90 and this much noise on smooth content
# give that size, so the entropy decoder has an ImageNet-like amount of work.
IMAGE_WH = (500, 375)
JPEG_QUALITY = 90
NOISE_SIGMA = 24.0
NOT_MEASURED = "DALI and nvJPEG (GPU decoders): not measured, no GPU here"


def parse_size(text: str) -> Tuple[int, int]:
    """``"500x375"`` -> (width, height)."""
    width, height = (int(side) for side in text.lower().split("x"))
    return width, height


def parse_workers(text: str) -> List[int]:
    return [int(n) for n in text.split(",")]


def harness_data_config(model: str = MODEL):
    """(``cfg.data``, image size) of ``data=imagenet`` with the paper's ImageNet recipe, as ``src.run`` composes
    them; the image size is the one ``src.train.loop`` gives the transforms."""
    from hydra import compose, initialize_config_dir

    from src.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["data=imagenet", f"model={model}", "recipe=crossvit_imagenet"])
    return cfg.data, cfg.data.image_size or cfg.model.img_size


def synthetic_jpeg(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Smooth random colour fields (large blobs and a finer texture) plus pixel noise: a photo's mix of flat
    regions and detail, rather than pure noise (far too large) or flat colour (far too small)."""
    def field(cells_w: int, cells_h: int) -> np.ndarray:
        cells = rng.uniform(0, 255, (max(cells_h, 1), max(cells_w, 1), 3)).astype(np.uint8)
        return np.asarray(Image.fromarray(cells).resize((width, height), Image.BICUBIC), dtype=np.float32)

    pixels = 0.7 * field(8, 6) + 0.3 * field(width // 8, height // 8) + rng.normal(0, NOISE_SIGMA, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_images(root: Path, images: int, classes: int, size: Tuple[int, int], seed: int = 0) -> Dict[str, list]:
    """``images`` JPEGs per split, dealt round-robin into ``classes`` folders; split -> the paths written."""
    if images < classes:
        raise ValueError(f"--loader-images {images} < --loader-classes {classes}: ImageFolder needs an image in "
                         f"every class folder")
    written = {}
    for offset, split in enumerate(("train", "val")):
        rng = np.random.default_rng(seed + offset)
        paths = []
        for i in range(images):
            path = root / split / f"class_{i % classes:03d}" / f"img_{i:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            synthetic_jpeg(rng, *size).save(path, "JPEG", quality=JPEG_QUALITY)
            paths.append(path)
        written[split] = paths
    return written


def mean_kb(paths: Sequence[Path]) -> float:
    return statistics.fmean(path.stat().st_size for path in paths) / 1024


def existing_images(root: Path) -> Dict[str, list]:
    """split -> the JPEGs already in ``root/{train,val}/<class>/``."""
    written = {split: sorted((root / split).glob("*/*.jpg")) for split in ("train", "val")}
    empty = [split for split, paths in written.items() if not paths]
    if empty:
        raise FileNotFoundError(f"no JPEGs in {', '.join(str(root / split) for split in empty)}: write them first "
                                f"(drop --loader-existing) or point --loader-root at the folder that holds them")
    return written


PIPELINES = {"float": False, "uint8": True}  # name -> build_transforms' prefetch


def harness_datasets(root: Path, data_cfg, image_size: int, pipeline: str = "float") -> Dict[str, Dataset]:
    """Pipeline name -> its ImageFolder, with the transforms a run of ``data=imagenet`` builds (on CUDA, the uint8
    ones: ``pipeline="uint8"``)."""
    from src.data import build_transforms
    from src.data.folders import image_folders

    train_transform, eval_transform = build_transforms(data_cfg, image_size, prefetch=PIPELINES[pipeline])
    train, val = image_folders(data_cfg.name, str(root), train_transform, eval_transform)
    return {"train": train, "eval": val}


def fixed_count_sampler(dataset: Dataset, count: int, shuffle: bool, seed: int):
    """``count`` indices, cycling through the dataset as epochs would: a few files are enough for any number of
    timed batches. Shuffled for train, as the harness's train loader is; in order for eval."""
    if shuffle:
        return RandomSampler(dataset, num_samples=count, generator=torch.Generator().manual_seed(seed))
    return [i % len(dataset) for i in range(count)]


def time_loader(dataset: Dataset, batch: int, workers: int, batches: int, shuffle: bool, seed: int = 0) -> dict:
    """Images/s of ``batches`` batches, after one warm-up batch per worker (start-up, reported apart)."""
    # N workers start together and each builds a whole batch, so when the first arrives the other N - 1 are almost
    # done: timing from the first batch would count them as free. From the N-th, the loader is in its steady state.
    warmup = max(1, workers)
    sampler = fixed_count_sampler(dataset, (warmup + batches) * batch, shuffle, seed)
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers,
                        pin_memory=torch.cuda.is_available())
    stamps, shape, dtype = [], None, None
    start = time.perf_counter()
    for images, _ in loader:  # run to the end, so that the workers shut down before the next count starts
        stamps.append(time.perf_counter())
        shape, dtype = list(images.shape), str(images.dtype)
    ready = stamps[warmup - 1]
    timed_s = stamps[-1] - ready
    img_s = batches * batch / timed_s
    return {"workers": workers, "img_s": img_s, "per_worker_img_s": img_s / max(workers, 1),
            "warmup_batches": warmup, "warmup_s": ready - start, "timed_s": timed_s, "batch_shape": shape,
            "batch_dtype": dtype}


def workers_needed(runs: List[dict], target_img_s: float) -> dict:
    """Workers for ``target_img_s``: ceil(target / per-worker img/s), the per-worker rate from the best run with
    workers (its img/s / N), or from the main process when only 0 workers were timed."""
    with_workers = [run for run in runs if run["workers"] > 0] or runs
    best = max(with_workers, key=lambda run: run["per_worker_img_s"])
    return {"per_worker_img_s": best["per_worker_img_s"], "per_worker_from": best["workers"],
            "workers_needed": math.ceil(target_img_s / best["per_worker_img_s"])}


@contextmanager
def torch_threads(n: int):
    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def decode_pil(path: Path) -> Tuple[int, int]:
    image = Image.open(path).convert("RGB")  # convert() forces the decode, as ImageFolder's loader does
    return image.height, image.width


def decode_torchvision(path: Path) -> Tuple[int, int]:
    from torchvision.io import decode_jpeg, read_file

    return tuple(decode_jpeg(read_file(str(path))).shape[1:])


DECODERS = {"pil": decode_pil, "torchvision": decode_torchvision}


def same_sizes(paths: Sequence[Path]) -> None:
    """One untimed pass of each decoder, which must agree with PIL on every image's size."""
    sizes = {name: [decode(path) for path in paths] for name, decode in DECODERS.items()}
    for name, found in sizes.items():
        if found != sizes["pil"]:
            raise RuntimeError(f"{name} decoded other image sizes than PIL")


def decode_speed(paths: Sequence[Path], rounds: int = 3) -> dict:
    """Images/s per core of each decoder: the median of ``rounds`` passes over all ``paths``, the decoders
    interleaved in each round so that machine noise hits both, after one untimed pass each. A deprecation notice
    a decoder gives is reported: a faster decoder on its way out is no decoder to adopt."""
    times = {name: [] for name in DECODERS}
    with torch_threads(1), warnings.catch_warnings(record=True) as caught:  # one core's figure
        warnings.simplefilter("always", DeprecationWarning)
        same_sizes(paths)
        warnings.simplefilter("ignore", DeprecationWarning)  # the timed passes pay no warning machinery
        for _ in range(rounds):
            for name, decode in DECODERS.items():
                start = time.perf_counter()
                for path in paths:
                    decode(path)
                times[name].append(time.perf_counter() - start)
    rates = {name: len(paths) / statistics.median(t) for name, t in times.items()}
    faster = max(rates, key=rates.get)
    notice = next((str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)
                   and "torchvision" in w.filename), None)
    return {"files": len(paths), "rounds": rounds, "pil_img_s": rates["pil"],
            "torchvision_img_s": rates["torchvision"], "faster": faster,
            "ratio": rates[faster] / min(rates.values()), "not_measured": NOT_MEASURED,
            "torchvision_deprecated": ". ".join(notice.split(". ")[:2]) + "." if notice else None}


def time_pipelines(datasets: Dict[str, Dataset], batch: int, workers: Sequence[int], batches: int,
                   target_img_s: float) -> Dict[str, dict]:
    results = {}
    for name, dataset in datasets.items():
        runs = [time_loader(dataset, batch, n, batches, shuffle=name == "train") for n in workers]
        results[name] = {"transform": repr(dataset.transform), "runs": runs, **workers_needed(runs, target_img_s)}
    return results


def bench_loader(root: Optional[str] = None, images: int = 64, classes: int = 2, size: Tuple[int, int] = IMAGE_WH,
                 batch: int = 64, workers: Sequence[int] = (0, 1, 2), batches: int = 8,
                 target_img_s: float = TARGET_IMG_S, decode_rounds: int = 3, model: str = MODEL,
                 pipeline: str = "float", existing: bool = False, decode_files: Optional[int] = None) -> dict:
    """Writes the JPEGs under ``root`` (a temporary folder, removed after, when None; ``existing``: uses those
    already there) and times both pipelines; raw decoding on the first ``decode_files`` of them (None: all)."""
    if batch < 1 or batches < 1 or min(workers) < 0:
        raise ValueError(f"--loader-batch {batch} and --loader-batches {batches} must be >= 1 and "
                         f"--loader-workers {','.join(map(str, workers))} >= 0")
    if pipeline not in PIPELINES:
        raise ValueError(f"--loader-pipeline {pipeline!r}: pick {' or '.join(PIPELINES)}")
    if existing and not root:
        raise ValueError("--loader-existing times the JPEGs under --loader-root: give --loader-root")
    data_cfg, image_size = harness_data_config(model)
    with tempfile.TemporaryDirectory(prefix="loader_bench_") as scratch:
        folder = Path(root) if root else Path(scratch)
        written = existing_images(folder) if existing else write_images(folder, images, classes, size)
        datasets = harness_datasets(folder, data_cfg, image_size, pipeline)
        pipelines = time_pipelines(datasets, batch, workers, batches, target_img_s)
        for name, split in (("train", "train"), ("eval", "val")):
            pipelines[name].update(split=split, images=len(written[split]), mean_kb=mean_kb(written[split]))
        decode = decode_speed((written["train"] + written["val"])[:decode_files], decode_rounds)
        classes, size = len({path.parent for path in written["train"]}), Image.open(written["train"][0]).size
    return {"model": model, "image_size": image_size, "data": data_cfg.name, "pipeline": pipeline,
            "existing": existing, "config_num_workers": data_cfg.num_workers, "root": root or "temporary",
            "classes": classes, "image_wh": list(size),
            "jpeg_quality": JPEG_QUALITY, "batch": batch, "batches": batches, "workers": list(workers),
            "cpus": len(os.sched_getaffinity(0)), "cpu": cpu_device_name(), "torch_threads": torch.get_num_threads(),
            "target_img_s": target_img_s, "target_source": TARGET_SOURCE, "pipelines": pipelines,
            "decode": decode}


PIPELINE_WORDS = {"float": "the float pipeline of a CPU run, normalised in the workers",
                  "uint8": "the uint8 pipeline of a CUDA run, normalised on the GPU"}


def to_markdown(r: dict) -> List[str]:
    width, height = r["image_wh"]
    pipeline = r.get("pipeline", "float")
    lines = [f"## Loader: the harness's ImageNet pipelines on this machine's CPU ({r['cpus']} CPUs, {r['cpu']})", "",
             f"`data={r['data']}` transforms at {r['image_size']} px ({r['model']}; {PIPELINE_WORDS[pipeline]}), "
             f"batch {r['batch']}, "
             f"{r['batches']} timed batches after one warm-up batch per worker (start-up: the warm-up column, kept "
             f"out of img/s); {width}x{height} JPEGs (quality {r['jpeg_quality']}) from the page cache; 0 workers: "
             f"the main process, {r['torch_threads']} torch threads.", ""]
    lines += ["| pipeline | workers | img/s | img/s per worker | warm-up s |", "|---|---|---|---|---|"]
    for name, p in r["pipelines"].items():
        lines += [f"| {name} | {run['workers']} | {run['img_s']:.1f} | {run['per_worker_img_s']:.1f} | "
                  f"{run['warmup_s']:.2f} |" for run in p["runs"]]
    lines += ["", f"## Loader workers for {r['target_img_s']:.0f} img/s", "",
              f"The target: {r['target_source']}. Workers needed = ceil(target / per-worker img/s), the per-worker "
              f"rate of the best worker count; `conf/data/{r['data']}.yaml` sets num_workers: "
              f"{'null' if r['config_num_workers'] is None else r['config_num_workers']}. These are this CPU's "
              f"figures.", "",
              "| pipeline | split | images | mean KB | per-worker img/s | from workers | workers needed |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {name} | {p['split']} | {p['images']} | {p['mean_kb']:.1f} | {p['per_worker_img_s']:.1f} | "
              f"{p['per_worker_from']} | {p['workers_needed']} |" for name, p in r["pipelines"].items()]
    d = r["decode"]
    lines += ["", "## Loader JPEG decode, one core", "",
              f"The median of {d['rounds']} passes over the same {d['files']} files; {d['not_measured']}.", "",
              "| decoder | img/s |", "|---|---|",
              f"| PIL `Image.open(path).convert(\"RGB\")` | {d['pil_img_s']:.1f} |",
              f"| `torchvision.io.decode_jpeg(read_file(path))` | {d['torchvision_img_s']:.1f} |", "",
              f"Faster: {d['faster']}, {d['ratio']:.2f}x."]
    if d["torchvision_deprecated"]:
        lines += ["", f"torchvision says: {d['torchvision_deprecated']}"]
    return lines + [""]
