"""A user's own images train without hand-holding: class folders (timm's folder reader) and WebDataset-style tar
shards, written here as tiny PNGs. The class names agree with the labels the dataset gives; data.num_classes null
follows the data and a given count that disagrees fails naming both; the shards give the very images and labels of
the folders they were written from; their training order is the loader generator's, exact on a mid-epoch resume;
bad shards fail before any work with one line; a real run on each trains to completed."""
import io
import json
import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Optional

import numpy as np
import pytest
import torch
from PIL import Image
from test_bad_inputs import assert_one_line, nothing_built, run_in_process  # noqa: F401 - nothing_built: a fixture
from torch.utils.data import DataLoader, Subset
from torchvision.transforms.functional import pil_to_tensor

from src.config import DataConfig
from src.data import build_data, class_names, resolve_num_classes
from src.data.folders import image_folders
from src.data.shards import expand_braces, shard_datasets
from src.train.checkpoint import ResumableBatches, capture_rng
from src.train.distributed import RankSlices

from conftest import run_module

# written in this order on purpose: natural order is Bird, class_2, class_10 (a plain sort puts class_10 first and
# Bird before both only because capitals sort first)
CLASSES = ("class_10", "class_2", "Bird")
NATURAL = ["Bird", "class_2", "class_10"]
PER_CLASS = 8


def png(seed: int, size: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def write_folders(root: Path, classes=CLASSES, per_class: int = PER_CLASS) -> Path:
    """root/train/CLASS/NN.png and root/val/CLASS/NN.png, every image different."""
    for split_number, split in enumerate(("train", "val")):
        for class_number, label in enumerate(classes):
            for index in range(per_class):
                path = root / split / label / f"{index:02d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(png(1000 * split_number + 100 * class_number + index))
    return root


def add_member(tar: tarfile.TarFile, name: str, body: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(body)
    tar.addfile(info, io.BytesIO(body))


def write_shard(path: Path, samples: List[tuple]) -> None:
    """samples: (key, image bytes or None, label text or None)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for key, image, label in samples:
            if image is not None:
                add_member(tar, f"{key}.png", image)
            if label is not None:
                add_member(tar, f"{key}.cls", str(label).encode())


def shards_from_folders(folders: Path, root: Path, per_shard: int = 7, names_file: bool = False) -> Path:
    """The folder dataset's samples, in its order and with its labels, as train-NNNNNN.tar / val-NNNNNN.tar."""
    train, val = image_folders("imagefolder", str(folders), None, None)
    for split, dataset in (("train", train), ("val", val)):
        samples = [(f"sample{index:04d}", Path(dataset.filename(index, absolute=True)).read_bytes(),
                    dataset.reader[index][1]) for index in range(len(dataset))]
        for number, start in enumerate(range(0, len(samples), per_shard)):
            write_shard(root / f"{split}-{number:06d}.tar", samples[start:start + per_shard])
    if names_file:
        (root / "classes.txt").write_text("".join(f"{name}\n" for name in class_names(folder_cfg(folders))))
    return root


def data_cfg(name: str, root: Path, num_classes: Optional[int] = None, **overrides) -> SimpleNamespace:
    values = vars(DataConfig(name=name, root=str(root), num_classes=num_classes, train_shards="train-*.tar",
                             val_shards="val-*.tar"))
    values.update(auto_augment=None, mixup=0.0, cutmix=0.0, reprob=0.0)
    values.update(overrides)
    return SimpleNamespace(**values)


def folder_cfg(root: Path, **overrides) -> SimpleNamespace:
    return data_cfg("imagefolder", root, **overrides)


def shard_cfg(root: Path, **overrides) -> SimpleNamespace:
    return data_cfg("shards", root, **overrides)


@pytest.fixture(scope="module")
def own_data(tmp_path_factory) -> Dict[str, Path]:
    base = tmp_path_factory.mktemp("own")
    folders = write_folders(base / "folders")
    return {"folders": folders, "shards": shards_from_folders(folders, base / "shards"),
            "named_shards": shards_from_folders(folders, base / "named_shards", names_file=True)}


def as_arrays(dataset, index: int):
    image, label = dataset[index]
    return np.asarray(image), label


# -- class names and labels ----------------------------------------------------------------------------------
def test_folder_classes_are_in_natural_order_and_name_each_images_label(own_data):
    names = class_names(folder_cfg(own_data["folders"]))
    assert names == NATURAL
    train, val = image_folders("imagefolder", str(own_data["folders"]), None, None)
    for dataset in (train, val):
        folder_of = [Path(dataset.filename(index, absolute=True)).parent.name for index in range(len(dataset))]
        labels = [dataset.reader[index][1] for index in range(len(dataset))]
        assert [names[label] for label in labels] == folder_of
        assert len(dataset) == len(CLASSES) * PER_CLASS


def test_shards_give_the_images_and_labels_of_the_folders_they_were_written_from(own_data):
    folder_train, folder_val = image_folders("imagefolder", str(own_data["folders"]), None, None)
    shard_train, shard_val = shard_datasets(str(own_data["shards"]), "train-*.tar", "val-*.tar", None, None)
    for folders, shards in ((folder_train, shard_train), (folder_val, shard_val)):
        assert len(shards) == len(folders) == len(CLASSES) * PER_CLASS
        for index in range(len(folders)):
            folder_image, folder_label = as_arrays(folders, index)
            shard_image, shard_label = as_arrays(shards, index)
            assert shard_label == folder_label and np.array_equal(shard_image, folder_image), index
    assert shard_train.filename(8, absolute=True) == f"{own_data['shards'] / 'train-000001.tar'}:sample0008.png"


def test_shard_class_names_are_classes_txt_or_the_labels_up_to_the_largest(own_data):
    assert class_names(shard_cfg(own_data["named_shards"])) == NATURAL
    assert class_names(shard_cfg(own_data["shards"])) == ["0", "1", "2"]
    assert resolve_num_classes(shard_cfg(own_data["shards"])) == 3


def test_a_shard_label_beyond_classes_txt_names_the_shard(tmp_path):
    root = bad_shards(tmp_path, "label_out_of_range")  # labels 0, 1, 2
    (root / "classes.txt").write_text("cat\ndog\n")
    with pytest.raises(ValueError, match=r"shard .*train-000000.tar holds label 2 but .*classes.txt names 2 classes"):
        class_names(shard_cfg(root))


def test_cheap_class_names_of_the_bundled_datasets():
    assert class_names(SimpleNamespace(name="digits")) == [str(digit) for digit in range(10)]
    assert class_names(SimpleNamespace(name="synthetic", num_classes=4)) == ["0", "1", "2", "3"]
    cifar100 = class_names(SimpleNamespace(name="cifar100", root="/no/such/dir", download=True))
    assert len(cifar100) == 100 == len(set(cifar100)) and cifar100[:2] == ["apple", "aquarium_fish"]
    assert class_names(SimpleNamespace(name="cifar10", root="/no", download=True))[0] == "airplane"


def test_shard_patterns_take_brace_ranges_lists_and_globs_in_natural_order(tmp_path):
    assert expand_braces("train-{000008..000011}.tar") == [f"train-{n:06d}.tar" for n in (8, 9, 10, 11)]
    assert expand_braces("{a,b}-{1..2}.tar") == ["a-1.tar", "a-2.tar", "b-1.tar", "b-2.tar"]
    for number, label in ((10, 1), (2, 0), (1, 1)):  # train-10.tar holds the last samples in natural order
        write_shard(tmp_path / f"train-{number}.tar", [(f"s{number}", png(number), label)])
    write_shard(tmp_path / "val-0.tar", [("v", png(0), 0)])
    for pattern in ("train-*.tar", "train-{1..10}.tar", "train-{1,2,10}.tar"):
        train, _ = shard_datasets(str(tmp_path), pattern, "val-0.tar", None, None)
        assert [train.filename(index) for index in range(3)] == ["train-1.tar:s1.png", "train-2.tar:s2.png",
                                                                 "train-10.tar:s10.png"], pattern
    with pytest.raises(FileNotFoundError, match=r"shards not found: data.root=/no/such/dir is not a folder"):
        shard_datasets("/no/such/dir", "train-*.tar", "val-*.tar", None, None)


# -- data.num_classes ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["folders", "shards"])
def test_num_classes_null_follows_the_data_through_mixup_and_a_batch(own_data, kind):
    cfg = (folder_cfg if kind == "folders" else shard_cfg)(own_data[kind], mixup=0.8, cutmix=1.0, num_classes=None)
    data = build_data(cfg, 16, 8, 8, seed=0)
    assert len(data.class_names) == 3 and data.num_train == 24
    images, targets = data.mixup(*next(iter(data.train_loader)))
    assert images.shape == (8, 3, 16, 16) and targets.shape == (8, 3)  # soft targets over the data's 3 classes


@pytest.mark.parametrize("kind,given,message", [
    ("folders", 5, r"data.num_classes=5 but imagefolder has 3 classes \(the class folders of .*folders/train\): "
                   r"set data.num_classes=3, or null"),
    ("shards", 2, r"data.num_classes=2 but shards has 3 classes \(labels 0 to 2: .*-00000\d.tar holds label 2\): "
                  r"set data.num_classes=3"),
    ("named_shards", 4, r"data.num_classes=4 but shards has 3 classes \(the lines of .*classes.txt\)"),
])
def test_a_given_num_classes_that_disagrees_with_the_data_names_both_and_the_fix(own_data, kind, given, message):
    cfg = (folder_cfg if kind == "folders" else shard_cfg)(own_data[kind], num_classes=given)
    with pytest.raises(ValueError, match=message):
        resolve_num_classes(cfg)
    with pytest.raises(ValueError, match=message):
        build_data(cfg, 16, 8, 8, seed=0)


def test_one_class_is_not_a_classifier(tmp_path):
    with pytest.raises(ValueError, match=r"imagefolder has 1 class .*a classifier needs at least 2"):
        resolve_num_classes(folder_cfg(write_folders(tmp_path, classes=("only",), per_class=2)))


def test_a_root_under_home_is_expanded(own_data, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(own_data["folders"].parent))
    for kind, cfg in (("folders", folder_cfg), ("shards", shard_cfg)):
        data = build_data(cfg(Path("~") / own_data[kind].name), 16, 8, 8, seed=0)
        assert data.num_train == 24 and len(data.class_names) == 3


# -- training order --------------------------------------------------------------------------------------------
def test_shard_order_is_the_generators_and_a_mid_epoch_resume_continues_it_exactly(own_data):
    """What the training loop needs of a dataset: shuffle from a generator, len, Subset (data.limit_train), rank
    slices of the global batch, and the same batches after a mid-epoch checkpoint (src/train/checkpoint.py)."""
    train, _ = shard_datasets(str(own_data["shards"]), "train-*.tar", "val-*.tar", pil_to_tensor, None)
    train = Subset(train, range(20))

    def loader(seed: int) -> DataLoader:
        return DataLoader(train, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(seed))

    def same(batches, others) -> bool:
        return len(batches) == len(others) and all(torch.equal(images, other_images) and torch.equal(labels, other)
                                                   for (images, labels), (other_images, other) in zip(batches, others))

    whole = list(ResumableBatches(loader(3)).epoch(0))
    assert sum(len(labels) for _, labels in whole) == 20
    assert not same(whole, list(ResumableBatches(loader(4)).epoch(0)))  # the order is the generator's
    first = ResumableBatches(loader(3))
    batches = first.epoch(0)
    done = [next(batches) for _ in range(2)]
    resumed = ResumableBatches(loader(99))  # a fresh process: its epoch's generator state comes from the checkpoint
    resumed.resume_point = {"order": first.epoch_order, "skip": 2, "rng": capture_rng({})}
    assert same(done + list(resumed.epoch(0)), whole)
    ranks = [list(RankSlices(loader(3).batch_sampler, rank, 2)) for rank in (0, 1)]  # 2 ranks, one global batch
    assert [a + b for a, b in zip(*ranks)] == list(loader(3).batch_sampler)


# -- bad shards: one line before any work ----------------------------------------------------------------------
def bad_shards(root: Path, kind: str) -> Path:
    good = [("a", png(1), 0), ("b", png(2), 1)]
    write_shard(root / "val-000000.tar", good)
    if kind == "no_cls":
        write_shard(root / "train-000000.tar", good + [("c", png(3), None)])
    elif kind == "not_an_index":
        write_shard(root / "train-000000.tar", good + [("c", png(3), "cat")])
    elif kind == "label_out_of_range":
        write_shard(root / "train-000000.tar", good + [("c", png(3), 2)])
    elif kind == "not_a_tar":
        (root / "train-000000.tar").write_text("a tar file's name, a text file's body")
    elif kind == "gzipped":
        write_shard(root / "plain.tar", good)
        with tarfile.open(root / "train-000000.tar", "w:gz") as tar:
            tar.add(root / "plain.tar", arcname="a.png")
    else:
        write_shard(root / "train-000000.tar", good)
    return root


BAD_SHARDS = [  # (kind, extra overrides, what the one line says)
    ("good", ["data.train_shards=nothing-*.tar"],
     r"data.train_shards=nothing-\*.tar matches no file in .*bad: point data.root at the folder that holds"),
    ("no_cls", [], r"shard .*train-000000.tar: 1 sample\(s\) have no .cls label \(c\): each sample is KEY.jpg"),
    ("not_an_index", [], r"shard .*train-000000.tar: c.cls holds 'cat', not a class index"),
    ("label_out_of_range", ["data.num_classes=2"],
     r"data.num_classes=2 but shards has 3 classes \(labels 0 to 2: .*train-000000.tar holds label 2\)"),
    ("not_a_tar", [], r"shard .*train-000000.tar is not a readable uncompressed tar \(.*\): write the shards"),
    ("gzipped", [], r"shard .*train-000000.tar is not a readable uncompressed tar"),
]


@pytest.mark.usefixtures("nothing_built")
@pytest.mark.parametrize("kind,overrides,message", BAD_SHARDS, ids=[case[0] for case in BAD_SHARDS])
def test_bad_shards_fail_before_any_work_with_one_line(monkeypatch, capsys, tmp_path, kind, overrides, message):
    root = bad_shards(tmp_path / "bad", kind)
    code, output = run_in_process(monkeypatch, capsys, tmp_path, "data=shards", f"data.root={root}", *overrides)
    assert code == 1, output
    assert_one_line(output, message)
    assert not (tmp_path / "run" / "results.json").exists()


# -- a real run on each --------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["folders", "shards"])
def test_a_run_on_own_data_without_num_classes_completes(own_data, tmp_path, kind):
    """On the command line as typed: ``data.root=~/...`` (Hydra's grammar has no ``~``: src.run writes the home out)."""
    data = ["data=imagefolder", "data.num_workers=0"] if kind == "folders" else ["data=shards", "data.num_workers=1"]
    home = own_data[kind].parent
    done = run_module("src.run", "logger=none", f"hydra.run.dir={tmp_path / 'run'}", *data,
                      f"data.root=~/{own_data[kind].name}", "train.epochs=1", "train.batch_size=8",
                      "sched.warmup_epochs=0", HOME=str(home))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["status"] == "completed" and record["config"]["data"]["num_classes"] is None
    assert record["config"]["data"]["root"] == str(own_data[kind])
    assert record["data_sizes"] == {"num_train": 24, "num_val": 24} and len(record["history"]) == 1
    cfg = folder_cfg(own_data[kind]) if kind == "folders" else shard_cfg(own_data[kind])
    assert record["classes"] == class_names(cfg)
    log = done.stdout + done.stderr
    assert f"{len(record['classes'])} classes" in log
    assert ("input 16 px (the first training image is stored at 16x16 px): branch 0 sees 16 px in 4-px patches "
            "(4x4 tokens)") in log
    assert "training augmentation: random-resized crop (scale [0.08, 1.0], bicubic), horizontal flip 0.5, " \
           "RandAugment rand-m9-mstd0.5-inc1, mixup 0.8 / cutmix 1.0, random erasing 0.25 (const), label smoothing " \
           "0.1; evaluation: resize and centre crop 0.875" in log
