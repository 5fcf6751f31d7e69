"""Random images of any size and class count, for smoke runs and speed benchmarks."""
import torch
from torch.utils.data import Dataset


class SyntheticDataset(Dataset):
    """Image ``i`` is Gaussian noise around a per-class mean colour, drawn from a generator seeded with
    ``(seed, i)``: the same seed always gives the same data, and a model can learn the classes."""

    def __init__(self, num_samples: int, num_classes: int, image_size: int, seed: int = 0, channels: int = 3):
        if num_samples < 1 or num_classes < 1 or image_size < 1:
            raise ValueError(f"synthetic data needs num_samples, num_classes and image_size >= 1, got "
                             f"{num_samples}, {num_classes}, {image_size}")
        self.num_samples, self.num_classes = num_samples, num_classes
        self.shape = (channels, image_size, image_size)
        self.seed = seed
        self.class_means = torch.randn(num_classes, channels, 1, 1,
                                       generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        target = int(torch.randint(self.num_classes, (1,), generator=generator))
        image = self.class_means[target] + torch.randn(self.shape, generator=generator)
        return image, target
