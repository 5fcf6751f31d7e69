"""Tar shards in WebDataset's layout as a map-style dataset: ``data=shards``.

Each sample of a shard is ``KEY.jpg`` (or another image suffix of ``folders.IMAGE_SUFFIXES``) and ``KEY.cls`` holding
its integer label; KEY is the member's path up to the first dot of its file name, as WebDataset splits it. timm's
``wds/`` reader streams shards through shuffle buffers (an IterableDataset): no ``len``, no ``Subset``, no exact
mid-epoch resume from a generator state. So each shard's members are indexed once (``tarfile`` walks the headers and
seeks over the bodies; the small ``.cls`` bodies are read, no image is decoded), and ``ShardReader`` hands timm's
``ImageDataset`` sample i as the bytes at its offset: a plain map-style dataset, shuffled by the DataLoader's generator.

Sample order: shards in natural order of their paths (train-2.tar before train-10.tar), samples in a shard in the
order their first member is stored. Class names: ``classes.txt`` in ``data.root`` (line i names label i) when it
is there, else "0", "1", ... up to the largest label found in either split: num_classes is that label + 1.
"""
import functools
import glob
import io
import os
import posixpath
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Tuple

import numpy as np
from timm.data.readers.reader import Reader
from timm.utils.misc import natural_key
from torch.utils.data import Dataset

from .image_files import ImageFiles

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp")  # folders.IMAGE_SUFFIXES'
CLASSES_FILE = "classes.txt"
SHOWN = 3  # keys named in a message
LAYOUT = "each sample is KEY.jpg (or .png, .webp) and KEY.cls holding its integer label"


def expand_braces(pattern: str) -> List[str]:
    """WebDataset's brace forms (the ``braceexpand`` package's): ``{000000..000009}`` (zero-padded to the first
    number's width) and ``{a,b}``; nested or repeated braces expand left to right."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    head, body, tail = pattern[:match.start()], match.group(1), pattern[match.end():]
    numbers = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    items = ([str(number).zfill(len(numbers[1])) for number in range(int(numbers[1]), int(numbers[2]) + 1)]
             if numbers else body.split(","))
    return [path for item in items for path in expand_braces(head + item + tail)]


def shard_paths(root: str, pattern: str, key: str) -> List[str]:
    """The files ``data.KEY``'s pattern (braces, then globs) matches under ``data.root``, in natural order."""
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"shards not found: data.root={root} is not a folder ({folder.resolve()}): point it at "
                                f"the folder that holds the tar files")
    found = {path for expanded in expand_braces(os.path.expanduser(pattern))
             for path in glob.glob(str(folder / expanded)) if os.path.isfile(path)}
    if not found:
        raise FileNotFoundError(f"data.{key}={pattern} matches no file in {folder.resolve()}: point data.root at "
                                f"the folder that holds the shards, or give data.{key} as a glob or brace range of "
                                f"their names, e.g. data.{key}='train-{{000000..000009}}.tar' or 'train-*.tar'")
    return sorted(found, key=natural_key)


@dataclass(frozen=True)
class ShardIndex:
    """One shard's samples: the image member's name, where its bytes are and the sample's label."""
    names: np.ndarray  # bytes (utf-8): a numpy array, not a list of str, so forked workers share its pages
    offsets: np.ndarray
    sizes: np.ndarray
    labels: np.ndarray


def index_shard(path: str) -> ShardIndex:
    """The shard's samples (cached per process while the file's size and time are unchanged)."""
    stat = os.stat(path)
    return _index_shard(path, stat.st_size, stat.st_mtime_ns)


def _split_name(member: str) -> Tuple[str, str]:
    folder, name = posixpath.split(member)
    stem, _, extension = name.partition(".")
    return posixpath.join(folder, stem), extension.lower()


def _shown(keys: List[str]) -> str:
    return ", ".join(keys[:SHOWN]) + (", ..." if len(keys) > SHOWN else "")


@functools.lru_cache(maxsize=4096)
def _index_shard(path: str, size: int, mtime_ns: int) -> ShardIndex:
    images, labels = {}, {}  # key -> (member name, offset, size); key -> (offset, size) of its .cls
    try:
        with tarfile.open(path, "r:") as tar:  # "r:": uncompressed only, where members have offsets to seek to
            for member in tar:
                key, extension = _split_name(member.name)
                if member.isfile() and extension in IMAGE_EXTENSIONS:
                    images[key] = (member.name, member.offset_data, member.size)
                elif member.isfile() and extension == "cls":
                    labels[key] = (member.offset_data, member.size)
                if member.offset_data + member.size > size:
                    raise tarfile.ReadError(f"{member.name} ends past the end of the file: truncated")
    except tarfile.ReadError as error:
        raise ValueError(f"shard {path} is not a readable uncompressed tar ({error}): write the shards with tar cf "
                         f"or webdataset's TarWriter (no gzip), {LAYOUT}") from error
    unlabelled, imageless = [key for key in images if key not in labels], [key for key in labels if key not in images]
    if unlabelled or imageless:
        what = (f"{len(unlabelled)} sample(s) have no .cls label ({_shown(unlabelled)})" if unlabelled else
                f"{len(imageless)} sample(s) have a .cls but no image ({_shown(imageless)})")
        raise ValueError(f"shard {path}: {what}: {LAYOUT}, in the same tar")
    with open(path, "rb") as file:
        values = [_read_label(file, path, key, *labels[key]) for key in images]
    return ShardIndex(np.array([name.encode() for name, _, _ in images.values()], dtype=bytes),
                      np.array([offset for _, offset, _ in images.values()], dtype=np.int64),
                      np.array([length for _, _, length in images.values()], dtype=np.int64),
                      np.array(values, dtype=np.int64))


def _read_label(file, path: str, key: str, offset: int, size: int) -> int:
    file.seek(offset)
    text = file.read(size).decode("utf-8", errors="replace").strip()
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"shard {path}: {key}.cls holds {text[:20]!r}, not a class index: {LAYOUT} (0, 1, 2, ...)")
    return int(text)


class ShardReader(Reader):
    """timm's reader interface over indexed shards: ``reader[i]`` is (the image's bytes as a file, its label). A
    shard is opened for each read: nothing is shared between the DataLoader's forked workers, and no descriptors
    pile up over thousands of shards (opening costs microseconds, decoding milliseconds)."""

    def __init__(self, shards: List[str]):
        super().__init__()
        indexes = [index_shard(path) for path in shards]
        self.shards = list(shards)
        self.shard = np.concatenate([np.full(len(index.labels), number) for number, index in enumerate(indexes)])
        self.names, self.offsets, self.sizes, self.labels = (
            np.concatenate([getattr(index, part) for index in indexes]) for part in ("names", "offsets", "sizes",
                                                                                     "labels"))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        with open(self.shards[self.shard[index]], "rb") as shard:
            shard.seek(int(self.offsets[index]))
            return io.BytesIO(shard.read(int(self.sizes[index]))), int(self.labels[index])

    def _filename(self, index: int, basename: bool = False, absolute: bool = False) -> str:
        member = self.names[index].decode()
        if basename:
            return posixpath.basename(member)
        shard = self.shards[self.shard[index]]
        return f"{shard if absolute else os.path.basename(shard)}:{member}"


def check_shards(root: str, train_pattern: str, val_pattern: str) -> Tuple[List[str], List[str]]:
    """Both splits' shard paths, every shard indexed (its errors raised) and each split holding samples."""
    splits = []
    for key, pattern, example in (("train_shards", train_pattern, "train-*.tar"),
                                  ("val_shards", val_pattern, "val-*.tar")):
        if not pattern:
            raise ValueError(f"data.{key} is not set for shards: pass data.{key}='{example}' (a glob or brace range "
                             f"of the tar files in data.root)")
        paths = shard_paths(root, pattern, key)
        if not sum(len(index_shard(path).labels) for path in paths):
            raise ValueError(f"data.{key}={pattern}: the {len(paths)} shard(s) it matches hold no samples: {LAYOUT}")
        splits.append(paths)
    return splits[0], splits[1]


def largest_label(root: str, train_pattern: str, val_pattern: str) -> Tuple[int, str]:
    """(the largest label of both splits, a shard that holds it): what a class count is checked against."""
    shards = [path for split in check_shards(root, train_pattern, val_pattern) for path in split]
    largest = max(shards, key=lambda path: index_shard(path).labels.max(initial=-1))
    return int(index_shard(largest).labels.max()), largest


def shard_class_names(root: str, train_pattern: str, val_pattern: str) -> List[str]:
    """``classes.txt``'s names when data.root has one (line i names label i), else "0" to the largest label; a
    label beyond the names is an error naming its shard."""
    top, largest = largest_label(root, train_pattern, val_pattern)
    names_file = Path(root).expanduser() / CLASSES_FILE
    if not names_file.is_file():
        return [str(label) for label in range(top + 1)]
    names = [line.strip() for line in names_file.read_text(encoding="utf-8").rstrip().splitlines()]
    if top >= len(names):
        raise ValueError(f"shard {largest} holds label {top} but {names_file} names {len(names)} classes (labels 0 "
                         f"to {len(names) - 1}): add the missing names, one a line, or fix the shard's .cls files")
    return names


def shard_datasets(root: str, train_pattern: str, val_pattern: str, train_transform: Callable,
                   eval_transform: Callable) -> Tuple[Dataset, Dataset]:
    train, val = check_shards(root, train_pattern, val_pattern)
    return (ImageFiles(root, reader=ShardReader(train), transform=train_transform),
            ImageFiles(root, reader=ShardReader(val), transform=eval_transform))
