"""Datasets on disk: CIFAR-10/100 (torchvision) and ImageNet-style train/ and val/ class folders. A missing
dataset is an error saying where we looked and how to get it.

Image folders are checked before any work (``check_image_folders``): an empty split, class folders without images
and files whose first bytes are no image format's are named, a few paths and the count. A file that passes that
check and still fails to decode (a truncated JPEG body) fails the run when it is loaded, naming the file: the
run is not trained on a silently changed dataset, and once the file is replaced the same command resumes."""
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, List, Tuple

from torch.utils.data import Dataset

CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
# torchvision's ImageFolder extensions, and the first bytes of each format (TIFF has two byte orders)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*", b"P1", b"P2", b"P3", b"P4", b"P5",
         b"P6", b"GIF8")
HEADER_CHECK_LIMIT = 50_000  # files per split whose header is read up front (evenly spaced beyond it: ImageNet)
SHOWN = 3  # paths named in a message


class UnreadableImage(ValueError):
    """An image file that does not decode; the message names it. A plain ``ValueError`` with one argument, so that
    a DataLoader worker re-raises it as it is."""


def cifar_folder_check(name: str, root: str, download: bool) -> None:
    folder = Path(root).expanduser() / CIFAR_FOLDERS[name]
    if not download and not folder.is_dir():
        raise FileNotFoundError(
            f"{name} not found: looked for {folder.resolve()}. Fix: run once with data.download=true (needs "
            f"network), or unpack the python version of {name} from https://www.cs.toronto.edu/~kriz/cifar.html "
            f"into {Path(root).expanduser().resolve()}, or point data.root at the folder that holds "
            f"{CIFAR_FOLDERS[name]}/")


def cifar(name: str, root: str, download: bool, train_transform: Callable,
          eval_transform: Callable) -> Tuple[Dataset, Dataset]:
    from torchvision.datasets import CIFAR10, CIFAR100

    cifar_folder_check(name, root, download)
    dataset = CIFAR10 if name == "cifar10" else CIFAR100
    return (dataset(root, train=True, download=download, transform=train_transform),
            dataset(root, train=False, download=download, transform=eval_transform))


def looks_like_image(path: str) -> bool:
    """The file's first bytes are those of an image format (WebP: a RIFF container of type WEBP)."""
    try:
        with open(path, "rb") as file:
            head = file.read(12)
    except OSError:
        return False
    return head.startswith(MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _shown(paths: List[str]) -> str:
    return ", ".join(paths[:SHOWN]) + (", ..." if len(paths) > SHOWN else "")


def _split_files(name: str, split_dir: Path) -> Tuple[List[str], List[str]]:
    """(class names, image files) of one split; raises ``ValueError`` for no classes or classes without images."""
    classes = sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir())
    if not classes:
        raise ValueError(f"{name}: {split_dir} holds no class folders: put each class's images in "
                         f"{split_dir}/CLASS/ (or point data.root at the folder that holds train/ and val/)")
    files, empty = [], []
    for label in classes:
        images = sorted(str(Path(top) / file) for top, _, names in os.walk(split_dir / label, followlinks=True)
                        for file in names if file.lower().endswith(IMAGE_SUFFIXES))
        files += images
        if not images:
            empty.append(str(split_dir / label))
    if empty:
        raise ValueError(f"{name}: {len(empty)} of {len(classes)} class folders under {split_dir} hold no images "
                         f"({_shown(empty)}): add images ({', '.join(IMAGE_SUFFIXES)}) or remove those folders")
    return classes, files


def _check_headers(name: str, split_dir: Path, files: List[str]) -> None:
    step = max(1, len(files) // HEADER_CHECK_LIMIT)
    checked = files[::step]
    with ThreadPoolExecutor(max_workers=8) as pool:  # I/O bound: a network file system answers in parallel
        bad = [path for path, good in zip(checked, pool.map(looks_like_image, checked)) if not good]
    if bad:
        share = f" of {len(checked)} checked" if step > 1 else ""
        raise ValueError(f"{name}: {len(bad)} file(s){share} under {split_dir} are not images (their first bytes are "
                         f"no image format's: empty, truncated or another kind of file): {_shown(bad)}. Delete or "
                         f"replace them")


@functools.lru_cache(maxsize=8)
def check_image_folders(name: str, root: str) -> None:
    """``data.root`` holds train/CLASS/* and val/CLASS/* with images in every class folder, the same classes in
    both, and every file's header (up to ``HEADER_CHECK_LIMIT`` a split) is an image format's. Once a process:
    a sweep's jobs over one folder check it once."""
    root_path = Path(root).expanduser()
    missing = [str((root_path / split).resolve()) for split in ("train", "val")
               if not (root_path / split).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"{name} not found: looked for {' and '.join(missing)}. Fix: set data.root to a folder holding "
            f"train/CLASS/*.jpg and val/CLASS/*.jpg (for ImageNet, the extracted ILSVRC2012 train and val "
            f"sets with val sorted into class folders)")
    classes = {}
    for split in ("train", "val"):
        classes[split], files = _split_files(name, root_path / split)
        _check_headers(name, root_path / split, files)
    if classes["train"] != classes["val"]:
        raise ValueError(f"{name}: train/ has {len(classes['train'])} classes but val/ has {len(classes['val'])}; "
                         f"both must hold the same class folders")


def load_image(path: str):
    """torchvision's loader, with a failure naming the file."""
    from torchvision.datasets.folder import default_loader

    try:
        return default_loader(path)
    except Exception as error:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError... for a bad file
        raise UnreadableImage(f"image {path} cannot be read ({type(error).__name__}: {error}): delete or replace "
                              f"it (its header looked like an image, the body does not decode), then run the "
                              f"same command again to resume") from error


def image_folders(name: str, root: str, train_transform: Callable,
                  eval_transform: Callable) -> Tuple[Dataset, Dataset]:
    from torchvision.datasets import ImageFolder

    check_image_folders(name, root)
    root_path = Path(root).expanduser()
    return (ImageFolder(root_path / "train", train_transform, loader=load_image),
            ImageFolder(root_path / "val", eval_transform, loader=load_image))
