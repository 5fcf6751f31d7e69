"""``python -m src.eval``: a run's weights scored without training, on its own validation set and on an image folder
side by side, written in the run record's schema (``analysis.collate`` tables them); bad input fails in one line
before any set is scored."""
import json
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from analysis.runs.local import load_runs

from conftest import run_module

SMOKE = ["+experiment=smoke", "train.threads=1", "train.progress=log"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    done = run_module("src.run", *SMOKE, f"hydra.run.dir={run_dir}", "train.epochs=2", merge_stderr=True)
    assert done.returncode == 0, done.stdout[-3000:]
    return run_dir


def image_folder(root, classes, per_class=3, size=32, layout="val"):
    """``root/val/CLASS/*.png`` (or ``root/CLASS/*.png``), random pixels."""
    rng = np.random.default_rng(0)
    for name in classes:
        folder = root / layout / name if layout else root / name
        folder.mkdir(parents=True)
        for index in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    return root


@pytest.mark.slow
def test_the_runs_own_set_scores_its_final_top1_and_a_folder_sits_beside_it(run_dir, tmp_path):
    record = json.loads((run_dir / "results.json").read_text())
    folder = image_folder(tmp_path / "photos", [str(i) for i in range(10)], layout=None)
    split = image_folder(tmp_path / "scans", [str(i) for i in range(10)], per_class=2)  # scans/val/CLASS/*
    out = tmp_path / "eval"
    done = run_module("src.eval", str(run_dir), "train.threads=1", "--set", "val", "--set", "photos",
                      "data=imagefolder", f"data.root={folder}", "--set", "scans", "data=imagefolder",
                      f"data.root={split}", "--out", str(out), merge_stderr=True)
    assert done.returncode == 0, done.stdout[-3000:]
    own = json.loads((out / "val" / "results.json").read_text())
    assert own["final"]["top1"] == record["final"]["top1"]  # the same weights, images and batches
    assert own["final"]["top1_branch"] == record["final"]["top1_branch"]
    assert own["evaluation"]["trained_epochs"] == 2 and own["history"] == []
    per_class = own["evaluation"]["per_class"]
    assert sum(entry["images"] for entry in per_class.values()) == record["data_sizes"]["num_val"]
    photos = json.loads((out / "photos" / "results.json").read_text())
    assert photos["data_sizes"]["num_val"] == 30 and photos["config"]["data"]["name"] == "imagefolder"
    predictions = np.load(out / "photos" / "val_predictions.npz")
    assert len(predictions["target"]) == 30
    assert photos["final"]["top1"] == pytest.approx(100 * np.mean(predictions["pred"] == predictions["target"]))
    scans = json.loads((out / "scans" / "results.json").read_text())
    assert scans["data_sizes"]["num_val"] == 20
    table = done.stdout[done.stdout.index(str(run_dir / "last.pt") + ":"):].splitlines()
    assert [line.split()[:2] for line in table[2:5]] == [["val", "32"], ["photos", "30"], ["scans", "20"]]
    assert f"{record['final']['top1']:.2f}" in table[2]
    collected = load_runs([out])
    assert sorted(collected.runs["top1"]) == sorted(entry["final"]["top1"] for entry in (own, photos, scans))


@pytest.mark.slow
@pytest.mark.parametrize("arguments, message", [
    (lambda run, tmp: ["data=imagefolder", f"data.root={image_folder(tmp / 'three', ['a', 'b', 'c'])}"],
     r"test set val \(data=imagefolder, root .*three\) has 3 classes \(a, b, c\) but the checkpoint was trained on 10 "
     r"\(0, 1, 2, 3, 4, \.\.\.\): evaluate on data with the checkpoint's classes"),
    (lambda run, tmp: ["fusion=pairwise"], r"fusion=pairwise: a test set changes only the data and how to run"),
    (lambda run, tmp: ["data.rooot=x"], r"data.rooot=x: data.rooot is not a config key"),
])
def test_bad_input_fails_in_one_line_before_any_set_is_scored(run_dir, tmp_path, arguments, message):
    out = tmp_path / "eval"
    done = run_module("src.eval", str(run_dir), *arguments(run_dir, tmp_path), "--out", str(out))
    assert done.returncode == 1, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and re.search(message, errors[0]), done.stderr
    assert not out.exists()


@pytest.mark.slow
def test_a_checkpoint_that_does_not_fit_its_config_is_named(run_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    checkpoint = torch.load(copy / "last.pt", weights_only=True)
    checkpoint["config"]["model"]["depth"] = [[1, 2, 0]]  # one encoder: the checkpoint has two
    torch.save(checkpoint, copy / "last.pt")
    done = run_module("src.eval", str(copy), "--out", str(tmp_path / "eval"))
    assert done.returncode == 1
    assert "does not fit the model its config builds (fusionvit_micro_32, fusion=cross): Unexpected key(s) in " \
           "state_dict: \"encoders.1." in done.stderr, done.stderr
