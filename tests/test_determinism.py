"""``train.deterministic`` (src/train/determinism.py): off, it touches nothing; on, it sets torch's deterministic
switches (on CUDA also the cuBLAS workspace and math attention); a model that reaches an op without a deterministic
CUDA kernel (pairwise fusion's bilinear resampling) is refused on CUDA before any work, and runs on the CPU; the
key is part of a run's identity without changing any older run's; and on the CPU two runs, or a killed and resumed
one, give the same numbers bit for bit, the numbers of the mode off."""
import contextlib
import json
import logging
import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from src.config import FIELDS
from src.identity import identity
from src.models import fusion_names
from src.preflight import check_config
from src.train import build
from src.train.checkpoint import Saver
from src.train.determinism import (
    CUBLAS_WORKSPACE,
    NONDETERMINISTIC_ON_CUDA,
    apply_determinism,
    check_deterministic,
    current_flags,
    restore_flags,
)
from src.train.loop import build_run, train

from conftest import compose_config

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
# pairwise: micro_16's 4x4 and 2x2 grids resampled into each other; digits: augmentation draws every step
TINY = ["logger=none", "fusion=pairwise", "train.epochs=2", "data.limit_train=128", "data.limit_val=64",
        "train.batch_size=32", "train.threads=1", "train.progress=log", "train.deterministic=true",
        "train.ckpt_every_steps=2"]
TIMES = ("epoch_time_s", "images_per_s", "data_wait_frac")


@contextlib.contextmanager
def process_state_kept():
    """torch's switches and the cuBLAS variable put back as they were: the tests after these must not inherit them."""
    flags, workspace = current_flags(), os.environ.get(CUBLAS_WORKSPACE)
    try:
        yield
    finally:
        restore_flags(flags)
        if workspace is None:
            os.environ.pop(CUBLAS_WORKSPACE, None)
        else:
            os.environ[CUBLAS_WORKSPACE] = workspace


@pytest.fixture(autouse=True)
def kept_by_each_test():
    with process_state_kept():
        yield


@pytest.fixture(scope="module", autouse=True)
def kept_by_the_module():  # set up before the module-scoped reference run, which a test's own fixture comes after
    with process_state_kept():
        yield


@pytest.fixture
def no_workspace_set(monkeypatch):
    monkeypatch.delenv(CUBLAS_WORKSPACE, raising=False)


# -- the switches ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", [CPU, CUDA])
def test_off_touches_no_switch_and_no_variable(device, no_workspace_set):
    before = current_flags()
    apply_determinism(False, device)
    assert current_flags() == before and CUBLAS_WORKSPACE not in os.environ
    assert not before["algorithms"] and before["flash"]  # torch's defaults: what every earlier run trained with


def test_on_for_cuda_sets_every_switch_and_the_cublas_workspace(no_workspace_set, caplog):
    with caplog.at_level(logging.INFO, logger="src.train.determinism"):
        apply_determinism(True, CUDA)  # touches no GPU: these are process-wide settings
    flags = current_flags()
    assert flags["algorithms"] and not flags["warn_only"]
    assert flags["cudnn_deterministic"] and not flags["cudnn_benchmark"]
    assert flags["math"] and not (flags["flash"] or flags["mem_efficient"] or flags["cudnn"])
    assert os.environ[CUBLAS_WORKSPACE] == ":4096:8"
    assert [r.getMessage() for r in caplog.records if "math attention" in r.getMessage() and "cost: " in r.getMessage()]


def test_on_for_the_cpu_keeps_the_fused_attention_and_the_environment(no_workspace_set):
    apply_determinism(True, CPU)  # the CPU's fused attention is deterministic; math would change the numbers
    flags = current_flags()
    assert flags["algorithms"] and flags["cudnn_deterministic"] and flags["flash"]
    assert CUBLAS_WORKSPACE not in os.environ


def test_a_cublas_workspace_torch_would_refuse_is_named(monkeypatch):
    monkeypatch.setenv(CUBLAS_WORKSPACE, ":0:0")
    with pytest.raises(ValueError, match=r"CUBLAS_WORKSPACE_CONFIG=:0:0: cuBLAS is deterministic with :4096:8 or "
                                         r":16:8 only"):
        apply_determinism(True, CUDA)


def test_cuda_started_before_the_variable_is_a_warning_that_says_how_to_be_sure(no_workspace_set, monkeypatch,
                                                                               caplog):
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with caplog.at_level(logging.WARNING, logger="src.train.determinism"):
        apply_determinism(True, CUDA)
    assert "export CUBLAS_WORKSPACE_CONFIG=:4096:8 before python" in caplog.text
    assert os.environ[CUBLAS_WORKSPACE] == ":4096:8"


@pytest.mark.parametrize("deterministic", [False, True])
def test_build_run_sets_the_switches_only_when_asked(deterministic):
    before = current_flags()
    build_run(compose_config([*TINY, f"train.deterministic={str(deterministic).lower()}"]))
    assert current_flags()["algorithms"] is deterministic
    assert deterministic or current_flags() == before


# -- ops without a deterministic CUDA kernel ----------------------------------------------------------------------
def test_the_table_names_real_aten_ops():
    assert [op for op in NONDETERMINISTIC_ON_CUDA if not hasattr(torch.ops.aten, op)] == []


def test_pairwise_on_cuda_is_refused_naming_the_op_the_key_and_the_fixes():
    cfg = compose_config(["fusion=pairwise", "train.deterministic=true"])
    with pytest.raises(ValueError) as refused:
        check_deterministic(cfg, "cuda")
    text = str(refused.value)
    assert text.startswith("train.deterministic=true on CUDA, but model=fusionvit_micro_16 with fusion=pairwise "
                           "computes F.interpolate(mode='bilinear')'s backward (upsample_bilinear2d_backward)")
    assert "train.deterministic=false" in text and "train.device=cpu" in text


@pytest.mark.parametrize("overrides,device", [
    (["fusion=pairwise", "train.deterministic=true"], "cpu"),  # the CPU's kernel is deterministic
    (["fusion=pairwise", "train.deterministic=false"], "cuda"),  # not asked for
    (["fusion=pairwise", "train.deterministic=true", "model.patch_size=[8,8]"], "cuda"),  # equal grids: no resampling
    *[([f"fusion={name}", "train.deterministic=true"], "cuda") for name in fusion_names() if name != "pairwise"],
])
def test_what_reaches_no_such_op_passes(overrides, device):
    check_deterministic(compose_config(overrides), device)


def test_the_preflight_refuses_it_before_any_work(monkeypatch):
    monkeypatch.setattr(build, "resolve_device", lambda setting: CUDA)  # as on a GPU machine
    cfg = compose_config(["fusion=pairwise", "train.deterministic=true", "logger=none"])
    with pytest.raises(ValueError, match=r"train.deterministic=true on CUDA, but .* fusion=pairwise"):
        check_config(cfg)
    check_config(compose_config(["fusion=cross", "train.deterministic=true", "logger=none"]))


# -- the key and the run's identity -------------------------------------------------------------------------------
def test_the_key_defaults_off_and_older_records_without_it_are_the_same_job():
    field = FIELDS["train.deterministic"]
    assert field.default is False and field.metadata["absent_means"] is False and not field.metadata["run_only"]
    config = OmegaConf.to_container(compose_config(["+experiment=smoke"]), resolve=True)
    assert config["train"]["deterministic"] is False
    recorded_before = json.loads(json.dumps(config))
    del recorded_before["train"]["deterministic"]
    assert identity(config) == identity(recorded_before)
    turned_on = json.loads(json.dumps(config))
    turned_on["train"]["deterministic"] = True
    assert identity(turned_on) != identity(config)


# -- the numbers, on the CPU --------------------------------------------------------------------------------------
class Killed(BaseException):
    """A SIGKILL right after a checkpoint: nothing of the loop's own runs after it."""


def numbers(results: dict, leave_out=TIMES) -> list:
    return [{key: value for key, value in row.items() if key not in leave_out} for row in results["history"]]


def weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "last.pt", weights_only=True)["model"]


def trained(run_dir: Path) -> dict:
    return train(compose_config(TINY), run_dir, {}, {}, None, "test")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reference")
    return trained(run_dir), weights(run_dir)


def test_two_deterministic_runs_give_the_same_numbers_and_weights(tmp_path, reference):
    results, final_weights = reference
    again = trained(tmp_path)
    assert numbers(again) == numbers(results) and again["final"] == results["final"]
    assert all(torch.equal(weights(tmp_path)[name], tensor) for name, tensor in final_weights.items())


def test_on_the_cpu_the_mode_changes_no_number(tmp_path, reference):
    results, final_weights = reference
    plain = train(compose_config([*TINY, "train.deterministic=false"]), tmp_path, {}, {}, None, "test")
    assert numbers(plain) == numbers(results)
    assert all(torch.equal(weights(tmp_path)[name], tensor) for name, tensor in final_weights.items())


def test_a_kill_mid_epoch_then_resume_gives_the_uninterrupted_numbers_and_weights(tmp_path, monkeypatch, reference):
    results, final_weights = reference
    save, mid_epoch_saves = Saver.save, []

    def save_then_kill(self, *args, **kwargs):
        save(self, *args, **kwargs)
        mid_epoch_saves.append(kwargs.get("mid_epoch"))
        if mid_epoch_saves.count(True) == 2:  # step 6 of 8: inside the second epoch, after the first's last.pt
            raise Killed

    with monkeypatch.context() as patched:
        patched.setattr(Saver, "save", save_then_kill)
        with pytest.raises(Killed):
            trained(tmp_path)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["state"]["step"] == 6
    resumed = trained(tmp_path)
    assert numbers(resumed)[0] == numbers(results)[0]  # the epoch finished before the kill, whole
    # the resumed epoch's row: its train loss averages the steps after the resume only (docs/robustness.md), and its
    # lr is the one at the resumed step (src/train/loop.py reads it when a launch starts the epoch)
    assert numbers(resumed, (*TIMES, "train_loss", "lr"))[1:] == numbers(results, (*TIMES, "train_loss", "lr"))[1:]
    assert resumed["final"] == results["final"] and resumed["best"] == results["best"]
    assert all(torch.equal(weights(tmp_path)[name], tensor) for name, tensor in final_weights.items())
