"""Datasets on disk: CIFAR-10/100 (torchvision) and ImageNet-style train/ and val/ class folders, read by timm's
folder reader (``ReaderImageFolder``) under ``ImageFiles``. A missing dataset is an error saying where we looked and
how to get it.

Image folders are checked before any work (``check_image_folders``): an empty split, class folders without images,
images in subfolders of a class folder and files whose first bytes are no image format's are named, a few paths and
the count. A file that passes that check and still fails to decode (a truncated JPEG body) fails the run when it is
loaded, naming the file (``ImageFiles``): the run is not trained on a silently changed dataset, and once the file is
replaced the same command resumes.

Labels: the class folders of train/ in ``class_order`` (timm's natural order), class i the i-th; timm's reader
is given that map, so ``class_names`` and the dataset's targets are the same list.
"""
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, List, Tuple

from timm.data.readers.reader_image_folder import ReaderImageFolder
from torch.utils.data import Dataset

from .image_files import ImageFiles, UnreadableImage, class_order

__all__ = ["UnreadableImage", "check_image_folders", "image_folders", "cifar", "cifar_folder_check", "CIFAR_CLASSES"]
CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
# torchvision's ImageFolder extensions, and the first bytes of each format (TIFF has two byte orders)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*", b"P1", b"P2", b"P3", b"P4", b"P5",
         b"P6", b"GIF8")
HEADER_CHECK_LIMIT = 50_000  # files per split whose header is read up front (evenly spaced beyond it: ImageNet)
SHOWN = 3  # paths named in a message
# the label names of torchvision's CIFAR files (batches.meta's label_names, meta's fine_label_names), label order
CIFAR_CLASSES = {
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    "cifar100": (
        "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl", "boy",
        "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee",
        "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant",
        "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower",
        "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
        "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate",
        "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark",
        "shrew", "skunk", "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower",
        "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor", "train", "trout", "tulip",
        "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm"),
}


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
    dataset, root = (CIFAR10 if name == "cifar10" else CIFAR100), Path(root).expanduser()
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
    """(class names in label order, image files) of one split; raises ``ValueError`` for no classes, classes without
    images, or images in a class folder's subfolders (timm's reader would label them by the subfolder)."""
    classes = class_order(entry.name for entry in os.scandir(split_dir) if entry.is_dir())
    if not classes:
        raise ValueError(f"{name}: {split_dir} holds no class folders: put each class's images in "
                         f"{split_dir}/CLASS/ (or point data.root at the folder that holds train/ and val/)")
    files, empty, nested = [], [], []
    for label in classes:
        images = []
        for top, _, names in os.walk(split_dir / label, followlinks=True):
            found = [os.path.join(top, file) for file in names if file.lower().endswith(IMAGE_SUFFIXES)]
            images += found
            nested += found if Path(top) != split_dir / label else []
        files += sorted(images)
        if not images:
            empty.append(str(split_dir / label))
    if empty:
        raise ValueError(f"{name}: {len(empty)} of {len(classes)} class folders under {split_dir} hold no images "
                         f"({_shown(empty)}): add images ({', '.join(IMAGE_SUFFIXES)}) or remove those folders")
    if nested:
        raise ValueError(f"{name}: {len(nested)} image(s) under {split_dir} are in subfolders of a class folder "
                         f"({_shown(nested)}): the class is the folder an image is in, so move them up into "
                         f"{split_dir}/CLASS/")
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
def check_image_folders(name: str, root: str) -> Tuple[str, ...]:
    """The class names, in label order, of ``data.root``'s train/CLASS/* and val/CLASS/*, after checking that every
    class folder holds images (and no subfolders of them), both splits have the same classes, and every file's header
    (up to ``HEADER_CHECK_LIMIT`` a split) is an image format's. Once a process: a sweep's jobs over one folder check
    it once."""
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
    return tuple(classes["train"])


def image_folders(name: str, root: str, train_transform: Callable,
                  eval_transform: Callable) -> Tuple[Dataset, Dataset]:
    """train/ and val/ through timm's folder reader, given our class map (``check_image_folders``'s order) and our
    image suffixes (timm's own list is .png, .jpg, .jpeg)."""
    classes, root_path = check_image_folders(name, root), Path(root).expanduser()
    return (folder_dataset(root_path / "train", classes, train_transform),
            folder_dataset(root_path / "val", classes, eval_transform))


def folder_dataset(folder: Path, classes: Tuple[str, ...], transform: Callable) -> Dataset:
    """One folder of class folders through timm's reader, class i the i-th of ``classes``, with our suffixes."""
    reader = ReaderImageFolder(str(folder), class_map={label: index for index, label in enumerate(classes)},
                               input_key=";".join(IMAGE_SUFFIXES))
    return ImageFiles(str(folder), reader=reader, transform=transform)


def eval_folder(root: str) -> Path:
    """The folder of a test set's class folders: ``root/val`` where there is one, else ``root`` itself."""
    root_path = Path(root).expanduser()
    if not root_path.is_dir():
        raise FileNotFoundError(f"test set folder {root_path} does not exist: point data.root at a folder of class "
                                f"folders (CLASS/*.jpg), or one holding val/CLASS/*.jpg")
    return root_path / "val" if (root_path / "val").is_dir() else root_path


@functools.lru_cache(maxsize=8)
def check_eval_folder(name: str, root: str) -> Tuple[str, ...]:
    """The class names, in label order, of a test set's folder (``eval_folder``), after the checks of a split."""
    folder = eval_folder(root)
    classes, files = _split_files(name, folder)
    _check_headers(name, folder, files)
    return tuple(classes)


def eval_folder_dataset(name: str, root: str, transform: Callable) -> Dataset:
    """A test set's images through timm's folder reader, in ``check_eval_folder``'s label order."""
    return folder_dataset(eval_folder(root), check_eval_folder(name, root), transform)
