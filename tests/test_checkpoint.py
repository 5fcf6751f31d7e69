"""Checkpoint files: atomic writes, weights_only loads, RNG round trips, corrupt/missing files, disk full."""
import random

import numpy as np
import pytest
import torch

from src.identity import identity
from src.train import checkpoint as ckpt
from src.train.checkpoint import AlreadyCompleted, check_run_dir
from src.train.files import write_atomic
from src.train.record_io import write_results


def payload(value: float) -> dict:
    model = torch.nn.Linear(3, 2)
    torch.nn.init.constant_(model.weight, value)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": int(value),
            "rng": ckpt.capture_rng({"train": torch.Generator().manual_seed(3)}), "wandb_run_id": "abc"}


def save(obj: dict, path, keep_previous=None):
    """A checkpoint file as ``checkpoint.Saver`` writes one (torch.save looked up at call time: monkeypatchable)."""
    return write_atomic(path, lambda file: torch.save(obj, file), keep_previous)


def test_save_then_load_with_weights_only(tmp_path):
    saved = payload(1.0)
    save(saved, tmp_path / ckpt.LAST)
    loaded = ckpt.load(tmp_path / ckpt.LAST)  # weights_only=True inside: would raise on pickled objects
    assert loaded["epoch"] == 1 and loaded["wandb_run_id"] == "abc"
    assert torch.equal(loaded["model"]["weight"], saved["model"]["weight"])
    assert loaded["optimizer"]["state"][0]["step"] == saved["optimizer"]["state"][0]["step"]
    assert not list(tmp_path.glob(".*.tmp"))  # no temp file left behind


def test_rng_round_trip_restores_python_numpy_torch_and_generators():
    generator = torch.Generator().manual_seed(7)
    torch.rand(5, generator=generator)  # not at its seed any more
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    state = ckpt.capture_rng({"train": generator})
    expected = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=generator).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9), generator.manual_seed(9)
    ckpt.restore_rng(state, {"train": generator})
    assert (random.random(), np.random.rand(), torch.rand(1).item(),
            torch.rand(1, generator=generator).item()) == expected


def test_previous_last_is_kept_and_corrupt_last_falls_back(tmp_path):
    save(payload(1.0), tmp_path / ckpt.LAST, keep_previous=tmp_path / ckpt.PREVIOUS)
    save(payload(2.0), tmp_path / ckpt.LAST, keep_previous=tmp_path / ckpt.PREVIOUS)
    assert ckpt.load_latest(tmp_path)["epoch"] == 2
    data = (tmp_path / ckpt.LAST).read_bytes()
    (tmp_path / ckpt.LAST).write_bytes(data[: len(data) // 2])  # truncated, as by a crash during a copy
    with pytest.raises(ckpt.CheckpointError, match=r"last\.pt is not a PyTorch checkpoint \(not a torch.save zip"):
        ckpt.load(tmp_path / ckpt.LAST)
    fallback = ckpt.load_latest(tmp_path)
    assert fallback["epoch"] == 1 and fallback["path"].endswith(ckpt.PREVIOUS)


def test_corrupt_without_fallback_names_the_file(tmp_path):
    (tmp_path / ckpt.LAST).write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt.CheckpointError, match=f"{tmp_path / ckpt.LAST} is not a PyTorch checkpoint"):
        ckpt.load_latest(tmp_path)


def test_missing_checkpoint_path_names_it(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match=r"nope\.pt does not exist"):
        ckpt.load(tmp_path / "nope.pt")
    assert ckpt.load_latest(tmp_path) is None  # nothing to resume: start fresh


class Evil:  # any class outside torch's allow-list: weights_only refuses to unpickle it
    pass


def test_pickled_code_is_refused(tmp_path):
    torch.save({"model": {}, "evil": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ckpt.CheckpointError, match=r"evil.pt holds pickled code \(test_checkpoint.Evil\), which "
                                                   r"loading would run: refused") as refused:
        ckpt.load(tmp_path / "evil.pt")
    assert "weights_only" not in str(refused.value)  # torch's advice to load it anyway is not passed on


def test_disk_full_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save(payload(1.0), tmp_path / ckpt.LAST, keep_previous=tmp_path / ckpt.PREVIOUS)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save(payload(2.0), tmp_path / ckpt.LAST, keep_previous=tmp_path / ckpt.PREVIOUS)
    monkeypatch.undo()
    assert ckpt.load(tmp_path / ckpt.LAST)["epoch"] == 1
    assert not (tmp_path / ckpt.PREVIOUS).exists()  # nothing was rotated
    assert not list(tmp_path.glob(".*.tmp"))


def test_unwritable_output_dir_raises(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the run dir should be")  # unwritable even for root, unlike chmod
    with pytest.raises(OSError):
        save(payload(1.0), blocker / "run" / ckpt.LAST)


def test_run_dir_checks(tmp_path):
    config = {"seed": 0, "train": {"epochs": 1, "force": False, "resume": "auto"}}
    check_run_dir(tmp_path, config, force=False)  # fresh folder: runs
    write_results(tmp_path, {"status": "failed", "config": config, "overrides": []})
    (tmp_path / ckpt.LAST).write_bytes(b"x")
    check_run_dir(tmp_path, config, force=False)  # a failed job of the same config is retried ...
    assert (tmp_path / ckpt.LAST).exists()  # ... from its last checkpoint
    write_results(tmp_path, {"status": "completed", "config": config, "overrides": [], "history": []})
    assert check_run_dir(tmp_path, config, force=False)["status"] == "completed"  # no history: rebuilt
    write_results(tmp_path, {"status": "completed", "config": config, "overrides": [], "history": [{"epoch": 0}]})
    with pytest.raises(AlreadyCompleted, match="already completed"):
        check_run_dir(tmp_path, {**config, "train": {**config["train"], "resume": "never"}}, force=False)
    (tmp_path / ckpt.LAST).write_bytes(b"x")
    check_run_dir(tmp_path, config, force=True)
    assert not (tmp_path / ckpt.LAST).exists()  # a forced re-run starts from scratch
    other = {"seed": 1, "train": config["train"]}
    another_config = f"{tmp_path / 'results.json'} holds results of another config.*train.force=true"
    with pytest.raises(ValueError, match=another_config):
        check_run_dir(tmp_path, other, force=False)
    (tmp_path / ckpt.BEST).write_bytes(b"x")
    check_run_dir(tmp_path, other, force=True)  # force overwrites another config's folder
    assert not (tmp_path / ckpt.BEST).exists()
    assert identity(config) != identity(other)
    # a schema key added later with a null default (off) does not orphan older run dirs; a set value does
    added = {**config, "model": {"pretrained": None}}
    assert identity(added) == identity({**config, "model": {}})
    assert identity({**config, "model": {"pretrained": "w.pt"}}) != identity(added)
