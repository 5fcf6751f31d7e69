"""The bundled digits at many scales: each sklearn digit drawn at a random size and position on a square canvas,
optionally among fragments of other digits (clutter), so that a fine and a coarse patch grid see different things.
Precedents: Cluttered MNIST (Jaderberg et al., Spatial Transformer Networks, 2015: digits at random positions among
fragments of others) and MNIST Large Scale (Jansson and Lindeberg, 2022: digits over a factor-of-8 range of scales).

A render's scale is the side of the drawn 8x8 digit over the canvas side, log-uniform in ``[min_scale, max_scale]``
(rounded to whole pixels). Training renders are drawn afresh every epoch, each from a generator seeded with
``(seed, epoch, index)``; the validation renders are fixed by ``data.split_seed`` alone and built once a process."""
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Optional, Tuple

import numpy as np
import torch
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch.utils.data import Dataset

from .digits import digits_split
from .selection import split_indices

MIN_DIGIT_PX = 4  # half the digits' native 8 px: below it a stroke is under a pixel wide
FRAGMENT_FRACTION = 0.5  # a clutter fragment is a crop of half another digit's render side (ours: Cluttered
# MNIST cuts 8x8 pieces out of 28x28 digits, a smaller share, but our digits are 8 px to begin with)
TRAIN_STREAM, VAL_STREAM, SELECTION_STREAM = 0, 1, 2  # the first word of every generator's seed: no two share one
AUGMENTATION_KEYS = ("auto_augment", "reprob", "hflip", "color_jitter")  # timm's, which the render replaces


@dataclass(frozen=True)
class RenderSpec:
    """How one image is drawn; checked on construction, naming the ``data.*`` field and the fix."""
    canvas: int  # the model's image size
    min_scale: float
    max_scale: float
    clutter: int  # fragments of other digits on the canvas (0: none)
    interpolation: str = "bicubic"

    def __post_init__(self):
        if not 0.0 < self.min_scale <= self.max_scale <= 1.0:
            raise ValueError(f"data.render.min_scale={self.min_scale} and data.render.max_scale={self.max_scale} "
                             f"must satisfy 0 < min_scale <= max_scale <= 1 (the digit side over the canvas side), "
                             f"e.g. data.render.min_scale=0.25 data.render.max_scale=1.0")
        smallest = self.min_scale * self.canvas
        if smallest < MIN_DIGIT_PX:
            raise ValueError(f"data.render.min_scale={self.min_scale} on a {self.canvas} px canvas draws digits of "
                             f"{smallest:.1f} px, under {MIN_DIGIT_PX} px: set data.render.min_scale >= "
                             f"{MIN_DIGIT_PX / self.canvas:.3g} or use a larger canvas (model.img_size)")
        if self.clutter < 0:
            raise ValueError(f"data.render.clutter={self.clutter} must be >= 0 (fragments of other digits; 0: none)")
        if self.interpolation.upper() not in Image.Resampling.__members__:
            raise ValueError(f"data.interpolation={self.interpolation!r}: pick one of "
                             f"{', '.join(m.lower() for m in Image.Resampling.__members__)}")

    def side(self, rng: np.random.Generator) -> int:
        """A log-uniform digit side in whole pixels."""
        scale = math.exp(rng.uniform(math.log(self.min_scale), math.log(self.max_scale)))
        return min(self.canvas, max(1, round(scale * self.canvas)))


def _resized(digit: np.ndarray, side: int, resample: Image.Resampling) -> np.ndarray:
    return np.asarray(Image.fromarray(digit).resize((side, side), resample))


def _paste(canvas: np.ndarray, patch: np.ndarray, rng: np.random.Generator) -> None:
    """``patch`` at a random place fully inside ``canvas``, keeping the brighter pixel of the two."""
    y, x = rng.integers(canvas.shape[0] - patch.shape[0] + 1, size=2)
    region = canvas[y:y + patch.shape[0], x:x + patch.shape[1]]
    np.maximum(region, patch, out=region)


def render(pool: np.ndarray, index: int, spec: RenderSpec, rng: np.random.Generator) -> Tuple[np.ndarray, int]:
    """Digit ``pool[index]`` on a ``canvas x canvas`` uint8 image, fully inside it, over ``spec.clutter`` fragments
    of other digits of the pool (each a random crop of another render, pasted anywhere; pixels combine by their
    maximum, so a fragment never erases the digit). Returns the image and the digit's side in pixels."""
    resample = Image.Resampling[spec.interpolation.upper()]
    canvas = np.zeros((spec.canvas, spec.canvas), np.uint8)
    for _ in range(spec.clutter):
        other = int(rng.integers(len(pool) - 1))
        other += other >= index  # any digit but this one
        source = _resized(pool[other], spec.side(rng), resample)
        crop = max(1, round(FRAGMENT_FRACTION * source.shape[0]))
        top, left = rng.integers(source.shape[0] - crop + 1, size=2)
        _paste(canvas, source[top:top + crop, left:left + crop], rng)
    side = spec.side(rng)
    _paste(canvas, _resized(pool[index], side, resample), rng)
    return canvas, side


class GreyToTensor:
    """timm's eval transform at the canvas size (ToTensor + normalize, the grey canvas as RGB) by table lookup:
    the same values (tests/test_multiscale_digits.py checks), in ~5 us an image instead of ~70."""

    def __init__(self, mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD):
        levels = torch.arange(256, dtype=torch.float32).div(255).expand(3, 256)
        self.table = ((levels - torch.tensor(mean)[:, None]) / torch.tensor(std)[:, None]).numpy()

    def __call__(self, canvas: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.take(self.table, canvas, axis=1))


class MultiScaleDigits(Dataset):
    """Training renders: item ``i`` is digit ``i % len(targets)``, ``renders_per_digit`` items per digit an epoch,
    drawn from a generator seeded with ``(seed, epoch, i)``. The training loop calls ``set_epoch`` before each
    epoch (as for ``DistributedSampler``), so every epoch has new renders and a resumed epoch the same ones."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, spec: RenderSpec, renders_per_digit: int, seed: int,
                 transform: Callable[[np.ndarray], torch.Tensor]):
        if renders_per_digit < 1:
            raise ValueError(f"data.render.renders_per_digit={renders_per_digit} must be >= 1 (training renders of "
                             f"each digit an epoch)")
        self.images, self.targets, self.spec = images, targets, spec
        self.renders_per_digit, self.seed, self.transform = renders_per_digit, seed, transform
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.renders_per_digit * len(self.targets)

    def render(self, index: int) -> Tuple[np.ndarray, int]:
        rng = np.random.default_rng((TRAIN_STREAM, self.seed, self.epoch, index))
        return render(self.images, index % len(self.targets), self.spec, rng)

    def __getitem__(self, index: int):
        canvas, _ = self.render(index)
        return self.transform(canvas), int(self.targets[index % len(self.targets)])


class FixedRenders(Dataset):
    """The validation renders, fixed: ``images`` (uint8, one canvas each), ``targets`` and each digit's rendered
    side in pixels (``sides``; ``scales`` is it over the canvas), in the loader's order. ``sources``: the held-out
    digit each render draws (``validation_digits``): renders of one digit succeed or fail together, so the digit,
    not the render, is the unit of the validation noise (``src.data.dataset_sources``)."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, sides: np.ndarray,
                 transform: Callable[[np.ndarray], torch.Tensor], sources: Optional[np.ndarray] = None):
        self.images, self.targets, self.sides, self.transform = images, targets, sides, transform
        self.sources = sources

    @property
    def scales(self) -> np.ndarray:
        return self.sides / self.images.shape[-1]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return self.transform(self.images[index]), int(self.targets[index])


def digit_of_render(count: int, digits: int) -> np.ndarray:
    """The held-out digit (its index in the validation split) that each of ``count`` validation renders draws:
    render ``i`` is of digit ``i % digits``, every digit once before any twice."""
    return np.arange(count) % digits


@lru_cache(maxsize=4)  # digits_split loads scikit-learn's digits: once per split, not per run read back
def held_out_digits(val_fraction: float, split_seed: int) -> int:
    return len(digits_split(val_fraction, split_seed)[1][1])


def validation_digits(data_cfg, num_val: int) -> np.ndarray:
    """The held-out digit of each of the first ``num_val`` validation renders (``data.limit_val`` keeps the
    first ones) of ``data_cfg``'s render settings: what ``FixedRenders.sources`` holds, derivable from a run's
    recorded config alone."""
    digits = held_out_digits(data_cfg.val_fraction, data_cfg.split_seed)
    count = data_cfg.render.val_renders_per_digit * digits
    if not 0 <= num_val <= count:
        raise ValueError(f"{num_val} validation images, but data.render.val_renders_per_digit="
                         f"{data_cfg.render.val_renders_per_digit} of {digits} held-out digits make {count}: "
                         f"the count is not of these renders")
    return digit_of_render(count, digits)[:num_val]


@lru_cache(maxsize=4)  # once a process: every run of a sweep in one worker shares it (it is read-only)
def validation_renders(spec: RenderSpec, renders_per_digit: int, val_fraction: float,
                       split_seed: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``renders_per_digit`` renders of each held-out digit, render ``i`` of digit ``i % n`` from a generator seeded
    with ``(split_seed, i)`` only: the same images for every run. Returns (images, targets, sides), read-only."""
    _, (digits, digit_targets) = digits_split(val_fraction, split_seed)
    return fixed_renders(spec, renders_per_digit, digits, digit_targets, (VAL_STREAM, split_seed))


@lru_cache(maxsize=4)
def selection_renders(spec: RenderSpec, renders_per_digit: int, val_fraction: float, split_seed: int,
                      selection: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The selection split's fixed renders (``data.selection``): ``renders_per_digit`` of each training digit it
    holds out, drawn as the validation renders are but from their own stream, among fragments of each other only."""
    (digits, digit_targets), _ = digits_split(val_fraction, split_seed)
    _, held = split_indices(len(digits), selection, split_seed, unit="digit")
    return fixed_renders(spec, renders_per_digit, digits[held], digit_targets[held], (SELECTION_STREAM, split_seed))


def fixed_renders(spec: RenderSpec, renders_per_digit: int, digits: np.ndarray, digit_targets: np.ndarray,
                  stream: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render ``i`` of digit ``i % n`` from a generator seeded with ``(*stream, i)``: (images, targets, sides)."""
    if renders_per_digit < 1:
        raise ValueError(f"data.render.val_renders_per_digit={renders_per_digit} must be >= 1 (e.g. 28: 10,080 images)")
    count = renders_per_digit * len(digit_targets)
    images = np.empty((count, spec.canvas, spec.canvas), np.uint8)
    sides = np.empty(count, np.int64)
    digit_of = digit_of_render(count, len(digit_targets))
    for i in range(count):
        images[i], sides[i] = render(digits, int(digit_of[i]), spec, np.random.default_rng((*stream, i)))
    targets = digit_targets[digit_of]
    for array in (images, targets, sides):
        array.setflags(write=False)
    return images, targets, sides


def multiscale_digits(data_cfg, image_size: int,
                      seed: int) -> Tuple[Dataset, FixedRenders, Optional[FixedRenders]]:
    """(training renders, fixed validation renders, fixed selection renders or None), all through the eval
    transform (``GreyToTensor``). ``data.selection`` holds out training digits, not renders: a digit rendered for
    training and for selection alike would make selection a test of memory."""
    for key in AUGMENTATION_KEYS:
        if getattr(data_cfg, key):
            raise ValueError(f"data.{key}={getattr(data_cfg, key)!r}: multiscale_digits takes no timm augmentation "
                             f"(the render is the augmentation): set data.{key}=" +
                             ("null" if key == "auto_augment" else "0"))
    render = data_cfg.render
    if render is None:
        raise ValueError("data.render is not set: multiscale_digits needs it; use data=multiscale_digits "
                         "(conf/data/multiscale_digits.yaml) or set data.render={}")
    spec = RenderSpec(image_size, render.min_scale, render.max_scale, render.clutter, data_cfg.interpolation)
    (train_x, train_y), _ = digits_split(data_cfg.val_fraction, data_cfg.split_seed)
    transform = GreyToTensor()
    held_out = None
    if data_cfg.selection:
        kept, _ = split_indices(len(train_x), data_cfg.selection, data_cfg.split_seed, unit="digit")
        train_x, train_y = train_x[kept], train_y[kept]
        images, targets, sides = selection_renders(spec, render.val_renders_per_digit, data_cfg.val_fraction,
                                                   data_cfg.split_seed, data_cfg.selection)
        held_out = FixedRenders(images, targets, sides, transform,
                                digit_of_render(len(targets), len(targets) // render.val_renders_per_digit))
    train = MultiScaleDigits(train_x, train_y, spec, render.renders_per_digit, seed, transform)
    images, targets, sides = validation_renders(spec, render.val_renders_per_digit, data_cfg.val_fraction,
                                                data_cfg.split_seed)
    return train, FixedRenders(images, targets, sides, transform, validation_digits(data_cfg, len(targets))), held_out
