"""Batches moved to the device one step ahead, the way timm's ``PrefetchLoader`` does it, around any iterator of
batches (so that a resumed epoch's skipped batches stay ``ResumableBatches``' business).

On CUDA the next batch is copied from pinned memory on a side stream while the current step runs, and uint8
images (the loader's transforms then stop at ``MaybePILToTensor``: timm's ``use_prefetcher``) are normalised there,
with random erasing after it as timm applies it on the device; the workers only decode and augment. Float images
(the digits renders, synthetic data) are copied as they are. On the CPU nothing is wrapped: the batches and so the
numbers are those of the plain loader."""
from typing import Iterator, Optional, Sequence, Tuple

import torch
from timm.data.random_erasing import RandomErasing

Batch = Tuple[torch.Tensor, torch.Tensor]


class DeviceBatches:
    """``to_device(batches)``: the same batches, on ``device``, normalised (see the module's docstring)."""

    def __init__(self, device: torch.device, mean: Sequence[float], std: Sequence[float],
                 erasing: Optional[RandomErasing] = None):
        self.device = device
        # uint8 in [0, 255]: scale mean and std instead of dividing every pixel by 255 first (as timm does)
        self.mean = torch.tensor([255 * value for value in mean], device=device).view(1, -1, 1, 1)
        self.std = torch.tensor([255 * value for value in std], device=device).view(1, -1, 1, 1)
        self.erasing = erasing

    @property
    def prefetches(self) -> bool:
        return self.device.type == "cuda"

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float, normalised, then random erasing; float images pass as they are."""
        if images.dtype != torch.uint8:
            return images
        images = images.float().sub_(self.mean).div_(self.std)
        return self.erasing(images) if self.erasing is not None else images

    def __call__(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        if not self.prefetches:
            yield from batches
            return
        stream = torch.cuda.Stream(self.device)
        ahead: Optional[Batch] = None
        for images, targets in batches:
            with torch.cuda.stream(stream):
                images = self.normalise(images.to(self.device, non_blocking=True))
                targets = targets.to(self.device, non_blocking=True)
            if ahead is not None:
                yield ahead
            torch.cuda.current_stream(self.device).wait_stream(stream)
            # made on the side stream, used on the main one: keep the allocator from reusing them early
            images.record_stream(torch.cuda.current_stream(self.device))
            targets.record_stream(torch.cuda.current_stream(self.device))
            ahead = (images, targets)
        if ahead is not None:
            yield ahead
