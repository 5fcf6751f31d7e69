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
    """``to_device(batches)``: the same batches, on ``device``, normalised (see the module's docstring).

    Random erasing is applied when a batch is handed over, not when it is prefetched: its draws then come after
    the previous step, so a checkpoint saved after step k holds the random state batch k + 1 is erased from (a
    resume erases it as the uninterrupted run did). One side stream serves every epoch, as in timm."""

    def __init__(self, device: torch.device, mean: Sequence[float], std: Sequence[float],
                 erasing: Optional[RandomErasing] = None):
        self.device = device
        # uint8 in [0, 255]: scale mean and std instead of dividing every pixel by 255 first (as timm does)
        self.mean = torch.tensor([255 * value for value in mean], device=device).view(1, -1, 1, 1)
        self.std = torch.tensor([255 * value for value in std], device=device).view(1, -1, 1, 1)
        self.erasing = erasing
        self._stream = None

    @property
    def prefetches(self) -> bool:
        return self.device.type == "cuda"

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float, normalised; float images pass as they are."""
        if images.dtype != torch.uint8:
            return images
        return images.float().sub_(self.mean).div_(self.std)

    def erase(self, images: torch.Tensor, was_uint8: bool) -> torch.Tensor:
        """Random erasing of normalised images, as timm's prefetcher does (only on images the loader left uint8)."""
        return self.erasing(images) if self.erasing is not None and was_uint8 else images

    # the stream hooks, the only CUDA-specific part (a test stands them in on the CPU)
    def side_stream(self):
        if self._stream is None:
            self._stream = torch.cuda.Stream(self.device)
        return torch.cuda.stream(self._stream)

    def hand_over(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        """The main stream waits for the copies; the allocator must not reuse their memory early."""
        current = torch.cuda.current_stream(self.device)
        current.wait_stream(self._stream)
        images.record_stream(current)
        targets.record_stream(current)

    def __call__(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        if not self.prefetches:
            yield from batches
            return
        ahead: Optional[Tuple[torch.Tensor, torch.Tensor, bool]] = None
        for images, targets in batches:
            was_uint8 = images.dtype == torch.uint8
            with self.side_stream():
                images = self.normalise(images.to(self.device, non_blocking=True))
                targets = targets.to(self.device, non_blocking=True)
            if ahead is not None:
                yield self.erase(ahead[0], ahead[2]), ahead[1]
            self.hand_over(images, targets)
            ahead = (images, targets, was_uint8)
        if ahead is not None:
            yield self.erase(ahead[0], ahead[2]), ahead[1]
