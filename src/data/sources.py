"""What a ``data`` config points at, checked before any work: the dataset is one we know and is where ``data.root``
says (``check_data_source``), its class names in label order (``class_names``, no image decoded, cached per process
where the disk is scanned), the class count a run trains with (``resolve_num_classes``) and what each validation
image was made from (``validation_sources``)."""
from pathlib import Path
from typing import List, Optional

import numpy as np

from src.config import FIELDS

from .digits import NUM_CLASSES as DIGITS_CLASSES
from .folders import CIFAR_CLASSES, check_image_folders, cifar_folder_check
from .multiscale_digits import validation_digits
from .shards import CLASSES_FILE, check_shards, largest_label, shard_class_names

DATASETS = ("digits", "multiscale_digits", "synthetic", "cifar10", "cifar100", "imagenet", "imagefolder", "shards")
NUM_CLASSES_RULE = FIELDS["data.num_classes"].metadata["rule"]


def check_data_source(data_cfg, folders: bool = True) -> None:
    """The dataset is one we know and, on disk, where ``data.root`` says; ``folders``: also the folders' contents
    (CIFAR's folder, the image folders' classes and file headers: ``folders.check_image_folders``). Shards are
    always indexed (once a process): their layout is only known from their members."""
    name = data_cfg.name
    if name not in DATASETS:
        raise ValueError(f"unknown data.name={name!r}: pick one of {', '.join(DATASETS)}")
    if name in ("digits", "multiscale_digits", "synthetic"):
        return
    if not data_cfg.root:
        raise ValueError(f"data.root is not set for {name}: pass data.root=/path/to/{name}")
    if name == "shards":
        check_shards(data_cfg.root, data_cfg.train_shards, data_cfg.val_shards)
    elif folders and name in CIFAR_CLASSES:
        cifar_folder_check(name, data_cfg.root, data_cfg.download)
    elif folders:
        check_image_folders(name, str(data_cfg.root))


def class_names(data_cfg) -> List[str]:
    """The class names in label order (the dataset's targets index this list): the train/ class folders in
    ``image_files.class_order``; the shards' ``classes.txt`` or "0" to their largest label; the digits' "0".."9";
    CIFAR's own names; synthetic's "0".."data.num_classes - 1"."""
    check_data_source(data_cfg)
    name = data_cfg.name
    if name in ("digits", "multiscale_digits"):
        return [str(digit) for digit in range(DIGITS_CLASSES)]
    if name == "synthetic":
        if data_cfg.num_classes is None:
            raise ValueError("data.num_classes is null but synthetic data has no classes of its own: give a count, "
                             "e.g. data.num_classes=10")
        return [str(label) for label in range(data_cfg.num_classes)]
    if name in CIFAR_CLASSES:
        return list(CIFAR_CLASSES[name])
    if name == "shards":
        return shard_class_names(data_cfg.root, data_cfg.train_shards, data_cfg.val_shards)
    return list(check_image_folders(name, str(data_cfg.root)))


def where_the_count_comes_from(data_cfg) -> str:
    """For a message: what on disk says how many classes there are (empty where the dataset fixes it)."""
    if data_cfg.name == "shards":
        if (Path(data_cfg.root).expanduser() / CLASSES_FILE).is_file():
            return f" (the lines of {Path(data_cfg.root).expanduser() / CLASSES_FILE})"
        top, shard = largest_label(data_cfg.root, data_cfg.train_shards, data_cfg.val_shards)
        return f" (labels 0 to {top}: {shard} holds label {top})"
    if data_cfg.name in ("imagenet", "imagefolder"):
        return f" (the class folders of {Path(data_cfg.root).expanduser() / 'train'})"
    return ""


def resolve_num_classes(data_cfg) -> int:
    """``data.num_classes``, or the data's own count when it is null; a given count that differs from the data's
    is an error naming both and the fix."""
    found, given = len(class_names(data_cfg)), data_cfg.num_classes
    if not NUM_CLASSES_RULE.holds(found):
        raise ValueError(f"{data_cfg.name} has {found} class{where_the_count_comes_from(data_cfg)}: a classifier "
                         f"needs at least 2, add the images of another class")
    if given is not None and given != found:
        raise ValueError(f"data.num_classes={given} but {data_cfg.name} has {found} classes"
                         f"{where_the_count_comes_from(data_cfg)}: set data.num_classes={found}, or null (the data's "
                         f"own count)")
    return found


def validation_sources(data_cfg, num_val: int) -> Optional[np.ndarray]:
    """The source of each of the ``num_val`` validation images in the loader's order, where several images share
    one (``data=multiscale_digits``: the held-out digit each render draws, ``i % 360`` on the proxy); None where
    every image is its own source (every other dataset). Images of one source succeed or fail together, so the
    source is the unit of the validation noise. The rule is ``validation_digits``'s, which also gives the dataset
    its ``sources`` (``dataset_sources``); from here a record's config alone gives them (older
    ``val_predictions.npz`` lack them)."""
    return validation_digits(data_cfg, num_val) if data_cfg.name == "multiscale_digits" else None
