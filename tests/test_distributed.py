"""DDP on CPU with Gloo, two real processes: the same losses and weights as one process on the same global
batch (no augmentation, mixup or dropout), and metrics reduced as sums of counts, not means of means."""
import json
import os
import socket

import pytest
import timm
import torch
import torch.multiprocessing as mp

import src.models  # noqa: F401 - registers fusionvit_*
from src.train import distributed

from conftest import run_module

GLOBAL_BATCH, STEPS = 16, 3


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("fusionvit_micro_32", fusion="cross", num_classes=10, drop_path_rate=0.0)


def make_data():
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(GLOBAL_BATCH * STEPS, 3, 32, 32, generator=generator)
    labels = torch.randint(10, (GLOBAL_BATCH * STEPS,), generator=generator)
    return torch.utils.data.TensorDataset(images, labels)


def train(model, loader) -> list:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for images, labels in loader:
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return losses


def worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    assert distributed.init(torch.device("cpu")) and distributed.world_size() == world
    dataset = make_data()
    sampler = distributed.sampler(dataset, shuffle=False, seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=GLOBAL_BATCH // world, sampler=sampler)
    model = distributed.wrap(make_model(), torch.device("cpu"))
    losses = torch.stack(train(model, loader))
    torch.distributed.all_reduce(losses)  # equal shards: the global mean loss is the mean of the rank means
    sums = distributed.reduce_sums({"correct": [3, 1][rank], "count": [4, 1][rank]}, torch.device("cpu"))
    if distributed.is_main():
        torch.save({"losses": losses / world, "state": model.module.state_dict(), "sums": sums}, out)
    distributed.teardown()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_two_process_ddp_matches_one_process_on_the_global_batch(tmp_path):
    out = str(tmp_path / "ddp.pt")
    mp.spawn(worker, args=(2, free_port(), out), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)

    single = make_model()
    loader = torch.utils.data.DataLoader(make_data(), batch_size=GLOBAL_BATCH, shuffle=False)
    losses = torch.stack(train(single, loader))
    torch.testing.assert_close(ddp["losses"], losses, rtol=1e-5, atol=1e-6)
    for name, value in single.state_dict().items():
        torch.testing.assert_close(ddp["state"][name], value, rtol=1e-4, atol=1e-5, msg=name)
    # 4 correct of 5 images is 80 %, not the 87.5 % a mean of the two ranks' accuracies would give
    assert ddp["sums"] == {"correct": 4.0, "count": 5.0}


def test_single_process_helpers_without_torchrun(monkeypatch):
    for key in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    assert not distributed.init()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, torch.device("cpu")) is model
    assert distributed.reduce_sums({"a": 1}, torch.device("cpu")) == {"a": 1}


@pytest.mark.slow
def test_torchrun_two_processes_through_src_run(tmp_path):
    done = run_module("torch.distributed.run", "--nproc_per_node=2", "-m", "src.run", "+experiment=smoke",
                      "train.epochs=2", "train.threads=1", f"hydra.run.dir={tmp_path}", merge_stderr=True,
                      OMP_NUM_THREADS="1")
    assert done.returncode == 0, done.stdout[-3000:]
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["status"] == "completed" and len(record["history"]) == 2
    assert done.stdout.count("done: top-1") == 1  # only rank 0 logs
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["best.pt", "last.prev.pt", "last.pt"]


@pytest.mark.slow
def test_a_torchrun_multirun_is_one_sweep_dir_and_a_rerun_skips_its_completed_jobs(tmp_path):
    # Each rank would resolve the sweep's time stamp at its own instant: rank 0's is shared through torchrun's store
    sweep = ["-m", "src.run", "-m", "+experiment=smoke", "fusion=none,cross", "train.epochs=1", "train.threads=1"]
    done = run_module("torch.distributed.run", "--nproc_per_node=2", *sweep,
                      f"hydra.sweep.dir={tmp_path}/" + "${sweep_stamp:}", merge_stderr=True, OMP_NUM_THREADS="1")
    assert done.returncode == 0, done.stdout[-3000:]
    (day,) = tmp_path.iterdir()
    (sweep_dir,) = day.iterdir()
    results = sorted(sweep_dir.glob("*/results.json"))
    assert len(results) == 2 and all(json.loads(p.read_text())["status"] == "completed" for p in results)
    before = [p.read_bytes() for p in results]

    again = run_module("torch.distributed.run", "--nproc_per_node=2", *sweep, f"hydra.sweep.dir={sweep_dir}",
                       merge_stderr=True, OMP_NUM_THREADS="1")
    assert again.returncode == 0, again.stdout[-3000:]
    assert again.stdout.count("is already completed for this config: skipped") == 2  # rank 0's two jobs
    assert [p.read_bytes() for p in results] == before
