"""ImageNet-like JPEGs for an image-folder run: ``python -m src.bench.jpegs --root DIR --train N --val M``.

``root/{train,val}/class_NNN/img_NNNNN.jpg``, dealt round-robin into ``--classes`` folders, each image the loader
bench's (``src.bench.loader.synthetic_jpeg``: 500x375, about 110 KB, as ImageNet's average). Written by a pool of
processes, one per CPU: one core makes about 50 a second. Image i of a split is drawn from its own seed, so the
files are the same whatever the number of processes. Writes ``root/jpegs.json``: the counts, sizes and time."""
import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from src.bench.loader import JPEG_QUALITY, mean_kb, parse_size, synthetic_jpeg

SPLITS = ("train", "val")


def jpeg_path(root: Path, split: str, index: int, classes: int) -> Path:
    return root / split / f"class_{index % classes:03d}" / f"img_{index:05d}.jpg"


def write_one(job: Tuple[Path, int, int, Tuple[int, int]]) -> Path:
    path, split_seed, index, size = job
    path.parent.mkdir(parents=True, exist_ok=True)
    synthetic_jpeg(np.random.default_rng([split_seed, index]), *size).save(path, "JPEG", quality=JPEG_QUALITY)
    return path


def write_split(root: Path, split: str, images: int, classes: int, size: Tuple[int, int],
                pool: ProcessPoolExecutor, processes: int) -> List[Path]:
    if images < classes:
        raise ValueError(f"{images} {split} images < {classes} classes: an image folder needs an image in every "
                         f"class folder")
    jobs = [(jpeg_path(root, split, i, classes), SPLITS.index(split), i, size) for i in range(images)]
    return list(pool.map(write_one, jobs, chunksize=max(1, images // (4 * processes))))  # few round trips


def write_jpegs(root: Path, train: int, val: int, classes: int, size: Tuple[int, int],
                processes: Optional[int] = None) -> dict:
    processes = processes or len(os.sched_getaffinity(0))
    started = time.perf_counter()
    with ProcessPoolExecutor(processes) as pool:
        written = {split: write_split(root, split, count, classes, size, pool, processes)
                   for split, count in zip(SPLITS, (train, val))}
    summary = {"root": str(root), "classes": classes, "image_wh": list(size), "jpeg_quality": JPEG_QUALITY,
               "processes": processes, "seconds": time.perf_counter() - started,
               **{f"{split}_images": len(paths) for split, paths in written.items()},
               "mean_kb": mean_kb(written["train"] + written["val"])}
    (root / "jpegs.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: Optional[List[str]] = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m src.bench.jpegs", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--train", type=int, required=True, help="training images")
    parser.add_argument("--val", type=int, required=True, help="validation images")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--size", default="500x375", help="WIDTHxHEIGHT")
    parser.add_argument("--processes", type=int, default=None, help="default: one per CPU")
    args = parser.parse_args(argv)
    summary = write_jpegs(args.root, args.train, args.val, args.classes, parse_size(args.size), args.processes)
    print(f"wrote {summary['train_images']} + {summary['val_images']} JPEGs ({summary['mean_kb']:.0f} KB on "
          f"average) in {summary['seconds']:.1f} s with {summary['processes']} processes")
    return summary


if __name__ == "__main__":
    main()
