"""timm's ``ImageDataset`` over any of timm's map-style readers (image folders, our tar shards), with two rules of
ours: an image that does not decode fails naming its file, and class names sort in one stated order."""
from typing import Iterable, List

from PIL import Image
from timm.data import ImageDataset
from timm.utils.misc import natural_key


class UnreadableImage(ValueError):
    """An image file that does not decode; the message names it. A plain ``ValueError`` with one argument, so that
    a DataLoader worker re-raises it as it is."""


def class_order(names: Iterable[str]) -> List[str]:
    """Class names in label order: timm's folder order (``natural_key``: case-folded, digit runs compared as numbers,
    so class_2 comes before class_10), ties broken by the name itself (timm leaves them to set order, which changes
    with Python's string hashing). Equal to torchvision's plain sort wherever numbers have one width (ImageNet's
    wnids, zero-padded names) and case does not vary."""
    return sorted(set(names), key=lambda name: (natural_key(name), name))


class ImageFiles(ImageDataset):
    """timm's ``ImageDataset``, except for a file that does not decode: timm logs a warning and trains on the next
    sample instead, so the run would train on a silently changed dataset; here the load fails naming the file, and
    once it is replaced the same command resumes."""

    def __getitem__(self, index: int):
        file, target = self.reader[index]
        with file:
            try:
                image = Image.open(file).convert(self.input_img_mode)  # convert decodes the whole body
            except Exception as error:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError... for a bad file
                name = self.reader.filename(index, absolute=True)
                raise UnreadableImage(f"image {name} cannot be read ({type(error).__name__}: {error}): delete or "
                                      f"replace it (its header looked like an image, the body does not decode), "
                                      f"then run the same command again to resume") from error
        return (self.transform(image) if self.transform is not None else image), target
