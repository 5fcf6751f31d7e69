"""A new run started from another run's weights (``model.pretrained=RUN_DIR`` or one of its checkpoints): every
tensor that fits loads, what does not starts fresh named with its reason, and the run's evaluation before its first
step equals the source run's own top-1 to the last digit; ``train.resume`` stays the way to continue the same job."""
import json
import logging

import pytest
import timm
import torch

import src.models  # noqa: F401  (registers the variants)
from src.models.fitting import fit_state_dict
from src.models.pretrained import adapt_crossvit_state_dict

from conftest import run_module

SMOKE = ["+experiment=smoke", "train.threads=1", "train.progress=log"]


def train(run_dir, *overrides):
    done = run_module("src.run", *SMOKE, f"hydra.run.dir={run_dir}", *overrides, merge_stderr=True)
    assert done.returncode == 0, done.stdout[-3000:]
    return json.loads((run_dir / "results.json").read_text()), done.stdout


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A cross run of 2 epochs: its last.pt and best.pt."""
    run_dir = tmp_path_factory.mktemp("source")
    record, _ = train(run_dir, "train.epochs=2", "sched.warmup_epochs=0")
    return run_dir, record


@pytest.mark.slow
def test_a_fine_tune_from_a_runs_checkpoint_starts_at_that_runs_top1(source, tmp_path):
    run_dir, record = source
    best, _ = train(tmp_path / "from_best", f"model.pretrained={run_dir / 'best.pt'}")
    assert best["start"]["top1"] == record["best"]["top1"]  # exactly: the same weights on the same images
    assert best["start"]["top1_branch"] == record["best"]["top1_branch"]
    assert (best["start"]["fresh"], best["start"]["unused"]) == ([], 0)
    last, output = train(tmp_path / "from_run_dir", f"model.pretrained={run_dir}")
    assert last["start"]["top1"] == record["final"]["top1"] and last["start"]["source"] == str(run_dir / "last.pt")
    assert "before training: top-1" in output and "nothing fresh" in output


@pytest.mark.slow
def test_another_fusion_keeps_branches_and_heads_and_names_the_fusion_as_the_reason(source, tmp_path):
    run_dir, _ = source
    record, output = train(tmp_path / "pairwise", "fusion=pairwise", f"model.pretrained={run_dir}")
    fresh = record["start"]["fresh"]
    assert len(fresh) == 1 and fresh[0].startswith("encoders.0.fusion, encoders.1.fusion")
    assert fresh[0].endswith("fusion=pairwise, the checkpoint's is cross")
    assert "head" not in " ".join(fresh)  # same classes: the heads load
    weights = torch.load(run_dir / "last.pt", weights_only=True)["model"]
    assert record["start"]["loaded"] == len([k for k in weights if ".fusion." not in k])


@pytest.mark.slow
def test_resuming_another_configs_checkpoint_points_at_the_option_that_starts_from_it(source, tmp_path):
    run_dir, _ = source
    done = run_module("src.run", *SMOKE, f"hydra.run.dir={tmp_path / 'other'}", "optim.lr=1e-4",
                      f"train.resume={run_dir / 'last.pt'}", merge_stderr=True)
    assert done.returncode == 1
    assert f"to start a new run from its weights give model.pretrained={run_dir / 'last.pt'}" in done.stdout


def model(fusion="cross", **kwargs):
    torch.manual_seed(0)
    return timm.create_model("fusionvit_micro_32", fusion=fusion, num_classes=10, **kwargs)


def test_a_plain_state_dict_without_fusion_into_a_cross_model_names_the_fusion():
    source = model("none").state_dict()
    fit = fit_state_dict(source, model("cross"))
    assert list(fit.fresh) == ["fusion=cross, the checkpoint's is none"]
    assert fit.loaded == len(source) and not fit.unused


def test_each_reason_is_named_class_count_width_and_depth():
    source = model(embed_dim=(48, 96), num_heads=(3, 3)).state_dict()
    target = model(embed_dim=(64, 96), num_heads=(4, 3), depth=((1, 2, 0),) * 3)
    source = {k: (v[:7] if k.startswith("head.") else v) for k, v in source.items()}  # a 7-class head
    fit = fit_state_dict(source, target)
    reasons = list(fit.fresh)
    assert "10 classes, the checkpoint has 7" in reasons
    assert "branch 0 is 64 wide, 48 in the checkpoint" in reasons
    assert "not in the checkpoint" in reasons  # the third encoder
    assert fit.fresh["not in the checkpoint"][0].startswith("encoders.2.")
    loaded = {k for k, v in fit.weights.items() if k in source and v is source[k]}
    assert any(k.startswith("encoders.0.branches.1.") for k in loaded)  # the L-branch, same width, loads


def test_a_checkpoint_of_another_model_fails_naming_a_tensor_and_the_variants_it_fits():
    source = model().state_dict()
    with pytest.raises(ValueError, match=r"does not fit fusionvit_micro_32: none of its branch tensors fits "
                                         r"\(patch_embed\.0\.proj\.weight has shape \[48, 3, 4, 4\] in the checkpoint "
                                         r"and \[64, 3, 4, 4\] in the model\); it fits fusionvit_micro_16 or "
                                         r"fusionvit_micro_32"):
        fit_state_dict(source, model(embed_dim=(64, 128), num_heads=(4, 4)))


def test_the_timm_filter_logs_one_line_naming_what_started_fresh(caplog):
    with caplog.at_level(logging.INFO, logger="src.models.pretrained"):
        adapt_crossvit_state_dict(model("none").state_dict(), model("cls_token"))
    lines = [r.getMessage() for r in caplog.records if r.name == "src.models.pretrained"]
    assert len(lines) == 1 and lines[0].startswith("start from pretrained weights: loaded ")
    assert "(16 tensors): fusion=cls_token, the checkpoint's is none" in lines[0]


@pytest.mark.slow
def test_a_run_started_from_another_models_checkpoint_fails_in_one_line_before_training(source, tmp_path):
    run_dir, _ = source
    done = run_module("src.run", *SMOKE, f"hydra.run.dir={tmp_path / 'wide'}", "model.embed_dim=[64,128]",
                      "model.num_heads=[4,4]", f"model.pretrained={run_dir}", merge_stderr=True)
    assert done.returncode == 1
    errors = [line for line in done.stdout.splitlines() if "error:" in line]
    assert len(errors) == 1 and "checkpoint does not fit fusionvit_micro_32: none of its branch tensors fits" in \
        errors[0] and "Traceback" not in done.stdout
    assert "epoch 1/1" not in done.stdout


@pytest.mark.slow
def test_hub_weights_offline_fail_in_one_line_naming_the_file_route(tmp_path):
    """A hub that refuses (HF_ENDPOINT on a closed port) and an empty cache: one line, no minute of retries."""
    done = run_module("src.run", "model=fusionvit_9_240", "model.pretrained=hub", "logger=none",
                      f"hydra.run.dir={tmp_path / 'run'}", merge_stderr=True, HF_ENDPOINT="http://127.0.0.1:9",
                      HF_HOME=str(tmp_path / "hf"))
    assert done.returncode == 1 and "Traceback" not in done.stdout
    assert ("error: model.pretrained=hub: 127.0.0.1:9 does not answer (Connection refused) and "
            "timm/crossvit_9_240.in1k is not in the cache; download timm/crossvit_9_240.in1k (model.safetensors) "
            "where the network allows, then give model.pretrained=PATH of that file") in done.stdout
