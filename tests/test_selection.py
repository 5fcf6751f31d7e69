"""The selection split (``data.selection``, issue 41): a fixed part of the training data, drawn from
``data.split_seed`` alone, held out and evaluated each epoch as ``selection_top1`` through the eval transform,
never trained on; the validation split (the test set of every table: the proxy's 10,080 renders) is unchanged, and
the best epoch is chosen on selection, not on test. Off (0) by default, with the identity of runs before the key."""
import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from src.data import build_data, build_splits
from src.data.selection import selection_count, split_indices
from src.identity import identity
from src.train.checkpoint import TrainState

from conftest import compose_config, run_module

PROXY = ["+experiment=cpu/proxy", "logger=none", "train.threads=1"]


@pytest.mark.parametrize("selection, available, count", [(0, 10, 0), (0.2, 1437, 287), (0.5, 3, 2), (5, 10, 5)])
def test_a_fraction_or_a_count_of_the_training_data_is_held_out(selection, available, count):
    assert selection_count(selection, available) == count


@pytest.mark.parametrize("selection, message", [
    (10, r"data.selection=10 holds out 10 of the 10 training images and leaves none to train on: use a fraction"),
    (2.5, r"data.selection=2.5: a fraction of the training images in \(0, 1\), e.g. data.selection=0.2, a whole"),
    (0.01, r"data.selection=0.01 of the 10 training images holds out none: raise it"),
])
def test_a_selection_split_that_cannot_be_drawn_names_the_key_and_the_fix(selection, message):
    with pytest.raises(ValueError, match=message):
        selection_count(selection, 10)


def test_the_split_is_fixed_by_split_seed_and_the_two_parts_share_nothing():
    kept, held = split_indices(100, 0.25, split_seed=0)
    assert len(held) == 25 and sorted(np.concatenate([kept, held])) == list(range(100))
    again_kept, again_held = split_indices(100, 0.25, split_seed=0)
    assert np.array_equal(held, again_held) and np.array_equal(kept, again_kept)
    assert not np.array_equal(held, split_indices(100, 0.25, split_seed=1)[1])


def test_the_proxy_holds_out_training_digits_and_keeps_its_10080_test_renders():
    plain = build_splits(compose_config(PROXY).data, 32, seed=0)
    split = build_splits(compose_config([*PROXY, "data.selection=0.2"]).data, 32, seed=0)
    assert plain[2] is None and np.array_equal(plain[1].images, split[1].images)  # the same test set
    assert len(split[1]) == 10080
    train, selection = split[0], split[2]
    assert len(train.images) + len(selection) // 28 == len(plain[0].images)  # whole digits held out, 28 renders each
    held_digits = {digit.tobytes() for digit in selection_digits(plain[0].images, train.images)}
    assert len(held_digits) == len(selection) // 28 and not held_digits & {d.tobytes() for d in train.images}
    assert np.array_equal(selection.sources, np.arange(len(selection)) % (len(selection) // 28))


def selection_digits(all_digits: np.ndarray, kept: np.ndarray) -> list:
    kept_bytes = {digit.tobytes() for digit in kept}
    return [digit for digit in all_digits if digit.tobytes() not in kept_bytes]


def test_an_augmented_datasets_selection_images_go_through_the_eval_transform():
    config = compose_config(["data=digits", "data.selection=0.2", "logger=none"])
    data = build_data(config.data, 32, 16, 32, seed=0)
    held = data.selection_loader.dataset
    assert data.num_selection == len(held) == round(0.2 * len(held.dataset))
    assert data.num_train == len(held.dataset) - len(held)
    assert torch.equal(held[0][0], held[0][0])  # no augmentation: the same image every time
    train = data.train_loader.dataset
    assert not set(train.indices) & set(held.indices)


def test_the_best_epoch_is_chosen_on_selection_not_on_the_test_split():
    state = TrainState()
    rows = [{"epoch": 0, "top1": 50.0, "top5": 90.0, "selection_top1": 60.0},
            {"epoch": 1, "top1": 55.0, "top5": 91.0, "selection_top1": 58.0}]  # better on test, worse on selection
    assert [state.record(row) for row in rows] == [True, False]
    assert state.best()["epoch"] == 0 and state.best_top1 == 50.0


def test_off_by_default_with_the_identity_of_runs_before_the_key():
    resolved = OmegaConf.to_container(compose_config(PROXY), resolve=True)
    assert resolved["data"]["selection"] == 0
    before = json.loads(json.dumps(resolved))
    del before["data"]["selection"]
    assert identity(resolved) == identity(before)


@pytest.mark.slow  # one short run of the proxy with a selection split
def test_a_run_reports_selection_and_test_top1_apart(tmp_path):
    done = run_module("src.run", *PROXY, "data.selection=0.2", "data.limit_train=256", "data.limit_val=512",
                      "train.epochs=2", "sched.warmup_epochs=0", f"hydra.run.dir={tmp_path}", merge_stderr=True)
    assert done.returncode == 0, done.stdout[-3000:]
    record = json.loads((tmp_path / "results.json").read_text())
    assert all("selection_top1" in row and "top1" in row for row in record["history"])
    assert record["final"]["selection_top1"] == record["history"][-1]["selection_top1"]
    assert record["data_sizes"]["num_selection"] == 512 and record["data_sizes"]["num_val"] == 512
    assert "selection top-1 " in done.stdout


def test_the_proxy_counts_its_selection_split_in_training_digits_before_any_work(tmp_path):
    done = run_module("src.run", *PROXY, "data.selection=1437", f"hydra.run.dir={tmp_path}", merge_stderr=True)
    assert done.returncode == 1
    assert "data.selection=1437 holds out 1437 of the 1437 training digits and leaves none to train on" in done.stdout
    assert not (tmp_path / "results.json").exists()  # refused before the run dir got a record


def test_a_selection_split_larger_than_the_training_data_fails_before_training(tmp_path):
    done = run_module("src.run", "data=digits", "data.selection=5000", "logger=none", f"hydra.run.dir={tmp_path}",
                      merge_stderr=True)
    assert done.returncode == 1
    assert "data.selection=5000 holds out 5000 of the 1437 training images and leaves none to train on" in done.stdout
    assert not (tmp_path / "last.pt").exists()
