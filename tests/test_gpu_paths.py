"""The faults a read of the CUDA paths found (issue 42), each reproduced on the CPU where it can be:
- every DDP rank drew the same random numbers (drop path, mixup, augmentation in the process and in the loader's
  workers): now rank 0 draws what one process draws and every other rank its own streams, with the same batches;
- a checkpoint kept rank 0's random state only, so every rank resumed rank 0's streams: now each rank's is kept,
  and a resume on another world size restarts the others from (seed, rank, step), saying so;
- persistent loader workers carried their random state across epochs, so a resumed run augmented differently;
- the prefetcher erased batch k + 1 before step k's checkpoint was saved, so a resume erased it differently, and
  made a new CUDA stream every epoch;
- CUDA random states were saved for every visible GPU (a resume on fewer: IndexError);
- a non-finite loss on one rank raised there while the others waited in an all-reduce (a hang), and a stop signal
  that reached one rank stopped it alone.
Two Gloo ranks are two real processes (``mp.spawn``)."""
import contextlib
import random
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from timm.data.random_erasing import RandomErasing
from timm.utils import random_seed

from src.data import build_data
from src.data.prefetch import DeviceBatches
from src.train import checkpoint as ckpt
from src.train import distributed
from src.train.engine import EpochMeter

from conftest import compose_config

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")

DIGITS = ["data=digits", "data.limit_train=48", "data.limit_val=16", "train.batch_size=16", "logger=none",
          "train.threads=1", "model.drop_path_rate=0.1"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def join(rank: int, world: int, port: int) -> None:
    import os
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    assert distributed.init(torch.device("cpu"))


def draws() -> dict:
    return {"torch": torch.rand(4).tolist(), "python": random.random(), "numpy": float(np.random.rand())}


class RandomItems(torch.utils.data.Dataset):
    """Each item is a draw of the process that loads it (a loader worker): what augmentation draws from."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int):
        return torch.tensor([index, int(torch.randint(2 ** 30, ()))])


def streams_worker(rank: int, world: int, port: int, out: str) -> None:
    from src.train.loop import build_run
    join(rank, world, port)
    run = build_run(compose_config([*DIGITS, "train.compile=true"]))
    found = {"draws": draws(), "compiled_around_ddp": isinstance(
        getattr(run.train_model, "_orig_mod", None), torch.nn.parallel.DistributedDataParallel)}
    loader = torch.utils.data.DataLoader(RandomItems(), batch_size=4, shuffle=True, num_workers=1,
                                         generator=torch.Generator().manual_seed(0))
    items = torch.cat(list(distributed.shard_loader(loader, seed=0)))
    found["indices"], found["worker_draws"] = items[:, 0].tolist(), items[:, 1].tolist()
    torch.save(found, f"{out}.{rank}")
    distributed.teardown()


@pytest.mark.slow  # two processes, each builds a run
def test_each_rank_draws_its_own_streams_on_the_same_global_batches_and_rank_0_those_of_one_process(tmp_path):
    out = str(tmp_path / "streams")
    mp.spawn(streams_worker, args=(2, free_port(), out), nprocs=2, join=True)
    ranks = [torch.load(f"{out}.{rank}", weights_only=True) for rank in range(2)]
    assert ranks[0]["draws"] != ranks[1]["draws"]  # drop path, mixup, erasing: each rank its own
    assert ranks[0]["worker_draws"] != ranks[1]["worker_draws"]  # the workers' augmentation too
    assert sorted(ranks[0]["indices"] + ranks[1]["indices"]) == list(range(8))  # still one split of each batch
    assert all(rank["compiled_around_ddp"] for rank in ranks)  # DDP's buckets can overlap the compiled backward

    from src.train.loop import build_run
    build_run(compose_config(DIGITS))  # one process: the streams it always drew
    assert draws() == ranks[0]["draws"]


def fake_run(generator: torch.Generator) -> SimpleNamespace:
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return SimpleNamespace(model=model, optimizer=optimizer, scheduler=torch.optim.lr_scheduler.StepLR(optimizer, 1),
                           ema=None, scaler=torch.amp.GradScaler("cpu", enabled=False),
                           batches=SimpleNamespace(loader=SimpleNamespace(generator=generator), epoch_order=None))


def saving_worker(rank: int, world: int, port: int, folder: str) -> None:
    join(rank, world, port)
    random_seed(distributed.stream_seed(7))
    saver = ckpt.Saver(Path(folder), "id", enabled=distributed.is_main(), gathers=True)
    saver.save(fake_run(torch.Generator().manual_seed(3)), ckpt.TrainState(epoch=1, step=6), None, mid_epoch=False)
    expected = draws()
    distributed.rank0_says(None)  # rank 0 has written last.pt
    checkpoint = torch.load(Path(folder) / ckpt.LAST, weights_only=True)
    ckpt.restore_rng(ckpt.rank_rng(checkpoint, {"seed": 7}))
    torch.save({"expected": expected, "resumed": draws()}, f"{folder}/rank{rank}")
    distributed.teardown()


@pytest.mark.slow  # two processes
def test_a_checkpoint_keeps_each_ranks_random_state_and_each_rank_resumes_its_own(tmp_path):
    mp.spawn(saving_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{rank}", weights_only=True) for rank in range(2)]
    assert all(rank["resumed"] == rank["expected"] for rank in ranks)
    assert ranks[0]["resumed"] != ranks[1]["resumed"]


def test_a_resume_on_more_ranks_restarts_the_new_ranks_streams_from_seed_rank_and_step(monkeypatch, caplog):
    random_seed(7)
    checkpoint = {"rng": ckpt.capture_rng({"train": torch.Generator().manual_seed(3)}), "rank_rngs": None,
                  "state": {"step": 40}}
    rank0 = draws()
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    rng = ckpt.rank_rng(checkpoint, {"seed": 7})
    assert "rank 1: the checkpoint holds random states for 1 rank(s), this run has 2" in caplog.text
    assert rng["generators"].keys() == {"train"}  # the loader's order stays rank 0's: the same global batches
    ckpt.restore_rng(rng)
    first = draws()
    ckpt.restore_rng(ckpt.rank_rng(checkpoint, {"seed": 7}))
    assert draws() == first != rank0  # reproducible, and not rank 0's streams


class CpuPrefetch(DeviceBatches):
    """The prefetcher's order of work on the CPU: the CUDA stream hooks stood in."""

    @property
    def prefetches(self) -> bool:
        return True

    def hand_over(self, images, targets) -> None:
        pass


def test_the_prefetcher_erases_a_batch_when_it_hands_it_over_so_a_resume_erases_it_alike(monkeypatch):
    streams = []
    monkeypatch.setattr(torch.cuda, "Stream", lambda device: streams.append(device) or "stream")
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    prefetch = CpuPrefetch(torch.device("cpu"), (0.5,) * 3, (0.25,) * 3,
                           RandomErasing(0.5, mode="pixel", device="cpu"))
    raw = [(torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(k)),
            torch.arange(4)) for k in range(4)]
    random_seed(0)
    batches = prefetch(iter(raw))
    next(batches)
    saved = ckpt.capture_rng()  # a checkpoint after step 0
    uninterrupted = [images for images, _ in batches]
    ckpt.restore_rng(saved)
    resumed = [images for images, _ in prefetch(iter(raw[1:]))]
    assert all(torch.equal(a, b) for a, b in zip(uninterrupted, resumed, strict=True))
    assert any(not torch.equal(a, prefetch.normalise(r[0].float())) for a, r in zip(uninterrupted, raw[1:]))
    assert len(streams) == 1  # one side stream for both epochs


def test_persistent_workers_are_off_for_training_so_a_resume_augments_as_the_uninterrupted_run():
    config = compose_config([*DIGITS, "data.num_workers=1"])

    def loader():
        return build_data(config.data, 32, 16, 16, seed=0).train_loader

    first = ckpt.ResumableBatches(loader())
    assert not first.loader.persistent_workers
    list(first.epoch(0))
    saved = ckpt.capture_rng({"train": first.loader.generator})  # the end of epoch 0
    uninterrupted = [images for epoch in (1, 2) for images, _ in first.epoch(epoch)]
    second = ckpt.ResumableBatches(loader())
    ckpt.restore_rng(saved, {"train": second.loader.generator})
    resumed = [images for epoch in (1, 2) for images, _ in second.epoch(epoch)]
    assert all(torch.equal(a, b) for a, b in zip(uninterrupted, resumed, strict=True))


def test_a_checkpoint_holds_this_gpus_random_state_and_an_older_one_of_more_gpus_still_resumes(monkeypatch, caplog):
    states = {0: torch.tensor([1], dtype=torch.uint8), 1: torch.tensor([2], dtype=torch.uint8)}
    current, restored = {"device": 1}, []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current["device"])
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda: states[current["device"]])
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state: restored.append(int(state[0])))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("every GPU's state"))
    assert torch.equal(ckpt.capture_rng()["cuda"], states[1])
    ckpt.restore_rng(ckpt.capture_rng())
    older = {**ckpt.capture_rng(), "cuda": [states[0], states[1]]}  # written by 2 GPUs, before this change
    ckpt.restore_rng(older)
    assert restored == [2, 2]
    ckpt.restore_rng({**older, "cuda": [states[0]]})  # one state, resumed on GPU 1: no IndexError
    assert restored == [2, 2] and "none for GPU 1" in caplog.text


def agreeing_worker(rank: int, world: int, port: int, folder: str) -> None:
    join(rank, world, port)
    run = SimpleNamespace(num_epochs=2, batches=SimpleNamespace(loader=[None] * 10))
    meter = EpochMeter()
    for step in range(1, 5):  # rank 1's loss goes non-finite at step 3; rank 0's never does
        meter.note_loss(torch.tensor(float("nan") if rank == 1 and step >= 3 else 1.0), 4, step, 0.1 * step)
    found = {"stop": distributed.any_rank(rank == 1)}
    try:
        meter.raise_if_non_finite(run, epoch=0)
        found["raised"] = None
    except FloatingPointError as error:
        found["raised"] = str(error)
    torch.save(found, f"{folder}/rank{rank}")
    distributed.teardown()


@pytest.mark.slow  # two processes
def test_a_non_finite_loss_or_a_stop_signal_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    mp.spawn(agreeing_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{rank}", weights_only=True) for rank in range(2)]
    assert all(rank["stop"] for rank in ranks)
    assert ranks[1]["raised"].startswith("non-finite loss at epoch 1/2, step 3/20 (loss nan, lr 0.3)")
    assert ranks[0]["raised"].startswith("non-finite loss at epoch 1/2, step 3/20 (a non-finite loss on another rank")


def test_the_global_batch_size_is_known_on_every_rank_without_asking_the_others(monkeypatch):
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    batches = torch.utils.data.BatchSampler(range(10), batch_size=4, drop_last=False)  # 4, 4, 2
    loader = torch.utils.data.DataLoader(range(10), batch_sampler=distributed.RankSlices(batches, 1, 3))
    assert [distributed.global_batch_size(loader, index, local=1) for index in range(3)] == [4, 4, 2]
