"""The same numbers on any number of ranks and micro-batches: for a fixed global batch, 1 process at batch 64, 1
process in 2 (or 4) accumulation steps of 32 (16), 2 torchrun ranks x 32 and 2 ranks x 2 steps of 16 give the same
per-epoch losses and top-1 (float tolerance; CPU, Gloo). The data is synthetic (no augmentation, no mixup, no drop
path): what could differ is the sequence of global batches and the weighing of a short last batch (96 images at
batch 64: a last batch of 32), and neither may. A global batch that does not split is refused before any work."""
import json

import pytest
import torch

from src.train import distributed
from src.train.loop import train

from conftest import compose_config, run_module

SETTING = ["data=synthetic", "data.num_train=96", "data.num_val=64", "train.batch_size=64", "train.epochs=2",
           "logger=none", "train.progress=log", "train.threads=1", "optim.lr=3e-3"]


def epochs(results: dict) -> list:
    return [(row["train_loss"], row["val_loss"], row["top1"]) for row in results["history"]]


def in_process(tmp_path, *overrides: str) -> dict:
    return train(compose_config([*SETTING, *overrides]), tmp_path, {"config_hash": "h", "choices": {}}, {}, None, "t")


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return in_process(tmp_path_factory.mktemp("single"))


def assert_same_numbers(results: dict, reference: dict) -> None:
    for got, expected in zip(epochs(results), epochs(reference), strict=True):
        assert got == pytest.approx(expected, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("steps", [2, 4])
def test_accumulation_in_one_process_gives_the_numbers_of_the_whole_batch(tmp_path, single, steps):
    accumulated = in_process(tmp_path, f"train.grad_accum_steps={steps}")
    assert_same_numbers(accumulated, single)


@pytest.mark.slow  # torchrun: two processes per case
@pytest.mark.parametrize("steps", [1, 2])
def test_two_ranks_give_the_numbers_of_one_process_with_or_without_accumulation(tmp_path, single, steps):
    done = run_module("torch.distributed.run", "--nproc_per_node=2", "-m", "src.run", *SETTING,
                      f"train.grad_accum_steps={steps}", f"hydra.run.dir={tmp_path}", merge_stderr=True,
                      OMP_NUM_THREADS="1")
    assert done.returncode == 0, done.stdout[-3000:]
    assert_same_numbers(json.loads((tmp_path / "results.json").read_text()), single)


def test_a_short_last_batch_is_cut_as_evenly_as_it_goes_and_every_index_is_drawn_once():
    batches = torch.utils.data.BatchSampler(range(10), batch_size=4, drop_last=False)  # 4, 4, 2
    slices = [list(distributed.RankSlices(batches, rank, 3)) for rank in range(3)]
    assert slices == [[[0, 1], [4, 5], [8]], [[2], [6], [9]], [[3], [7], []]]
    assert sorted(i for rank in slices for batch in rank for i in batch) == list(range(10))


@pytest.mark.parametrize("overrides, message", [
    (["train.grad_accum_steps=0"], r"train.grad_accum_steps=0: use 1 \(no accumulation\) or more"),
    (["train.grad_accum_steps=3"], r"train.batch_size=64 is the global batch and must split evenly across 1 "
                                   r"process\(es\) x 3 accumulation step\(s\): use a multiple of 3"),
])
def test_a_batch_that_does_not_split_fails_before_any_work(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        in_process(tmp_path, *overrides)
    assert not (tmp_path / "last.pt").exists()
