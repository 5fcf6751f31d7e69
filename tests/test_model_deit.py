"""One branch is a model: ``fusionvit_deit_*`` is timm's DeiT (same parameters, same logits from timm's weights
through timm's own ``pretrained=True`` path, the paper's Table 2 counts), and a DeiT checkpoint starts one branch of
a CrossViT (``load_branch_from_vit``), whose L-branch has DeiT's architecture."""
import copy
import logging

import pytest
import timm
import timm.optim
import torch
from timm.layers import resample_abs_pos_embed

import src.models as models
from src.models.pretrained import _in_branch

SIZES = ("tiny", "small", "base")
# Paper (arXiv 2103.14899) Table 2, the DeiT rows: params (M) and FLOPs (G, i.e. GMACs).
PAPER = {"tiny": (5.7, 1.3), "small": (22.1, 4.6), "base": (86.6, 17.6)}
SLOW_BASE = pytest.param("base", marks=pytest.mark.slow)  # 86M parameters: building and saving it takes ~10 s


def deit(size: str) -> torch.nn.Module:
    torch.manual_seed(1)
    return timm.create_model(f"deit_{size}_patch16_224", pretrained=False).eval()


def ours_from_file(size: str, path, **kwargs) -> torch.nn.Module:
    return timm.create_model(f"fusionvit_deit_{size}_224", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                             **kwargs).eval()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """timm's DeiT-Ti and its weights saved as a file (tests that change a model change a copy)."""
    reference = deit("tiny")
    path = tmp_path_factory.mktemp("deit") / "deit_tiny_patch16_224.pth"
    torch.save(reference.state_dict(), path)
    return reference, path


def log_lines(caplog):
    return [record.getMessage() for record in caplog.records if record.name == "src.models.pretrained"]


@pytest.mark.parametrize("size", ["tiny", "small", SLOW_BASE])
def test_logits_equal_timms_deit_started_through_timms_pretrained_path(size, tmp_path):
    reference = deit(size)
    torch.save(reference.state_dict(), tmp_path / "deit.pth")
    ours = ours_from_file(size, tmp_path / "deit.pth")
    assert ours.fusion_name == "none" and len(ours.patch_embed) == 1
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(images), reference(images), rtol=0, atol=1e-5)


@pytest.mark.parametrize("size", SIZES)
def test_parameter_count_and_gmacs_equal_timm_and_the_papers_table_2(size):
    with torch.device("meta"):  # shapes only: the count needs no values
        ours, reference = timm.create_model(f"fusionvit_deit_{size}_224"), deit(size)
    assert models.count_params(ours) == models.count_params(reference)
    assert models.count_params(ours) / 1e6 == pytest.approx(PAPER[size][0], rel=0.01)
    assert models.count_flops(ours, (3, 224, 224)) == pytest.approx(PAPER[size][1], abs=0.05)  # the paper's rounding


@pytest.mark.parametrize("fusion", [name for name in models.fusion_names() if name != "none"])
def test_a_fusion_on_one_branch_is_rejected_naming_fusion_none(fusion):
    with pytest.raises(ValueError, match=rf"fusion={fusion} needs at least 2 branches but model.patch_size=\[16\] "
                                         rf"gives 1: a single-branch model is a plain ViT, build it with fusion=none"):
        timm.create_model("fusionvit_deit_tiny_224", fusion=fusion)


def test_pretrained_cfg_points_at_timms_deit_weights():
    for size in SIZES:
        ours = timm.models.get_pretrained_cfg(f"fusionvit_deit_{size}_224")
        theirs = timm.models.get_pretrained_cfg(f"deit_{size}_patch16_224")
        assert (ours.hf_hub_id, ours.tag, ours.num_classes, ours.mean, ours.std, ours.crop_pct, ours.input_size) == (
            theirs.hf_hub_id, theirs.tag, theirs.num_classes, theirs.mean, theirs.std, theirs.crop_pct,
            theirs.input_size)
        assert (ours.first_conv, ours.classifier) == (("patch_embed.0.proj",), ("head.0",))
    assert not set(models.DEIT_VARIANTS) & set(models.PAPER_VARIANTS)  # those mirror timm's crossvit_*


def test_features_pooling_and_classifier_reset_equal_timms_deit(tiny):
    reference, path = copy.deepcopy(tiny[0]), tiny[1]
    ours = ours_from_file("tiny", path)
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        (tokens,) = ours.forward_features(images)
        torch.testing.assert_close(tokens, reference.forward_features(images), rtol=0, atol=1e-5)
        torch.testing.assert_close(ours.forward_head([tokens], pre_logits=True),
                                   reference.forward_head(reference.forward_features(images), pre_logits=True),
                                   rtol=0, atol=1e-5)
        assert ours.num_features == ours.head_hidden_size == reference.num_features == 192
        # one block per encoder: encoder k's tap is timm's blocks.k output, as NCHW maps
        taps = ours.forward_intermediates(images, intermediates_only=True)
        theirs = reference.forward_intermediates(images, intermediates_only=True)
        assert len(taps) == len(theirs) == 12
        for a, b in zip(taps, theirs):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        ours.reset_classifier(0, "avg")
        reference.reset_classifier(0, "avg")
        torch.testing.assert_close(ours(images), reference(images), rtol=0, atol=1e-5)
        ours.reset_classifier(10)
        assert ours(images).shape == (2, 10) and ours.global_pool == "avg"


def test_layer_decay_groups_equal_timms_deit(tiny):
    reference, path = tiny
    ours = ours_from_file("tiny", path)

    def groups(model):
        optimizer = timm.optim.create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.75)
        return sorted((round(group["lr_scale"], 8), group["weight_decay"], sum(p.numel() for p in group["params"]))
                      for group in optimizer.param_groups)

    assert groups(ours) == groups(reference)


def test_crossvits_l_branch_has_deits_architecture():
    """The paper: CrossViT-Ti/S/B set their large (primary) branch identical to DeiT-Ti/S/B."""
    for size in SIZES:
        with torch.device("meta"):
            crossvit, reference = timm.create_model(f"fusionvit_{size}_240"), deit(size)
        l_branch = {name: tuple(p.shape) for name, p in crossvit.named_parameters() if _in_branch(name, 1)}
        assert sum(torch.Size(shape).numel() for shape in l_branch.values()) == models.count_params(reference)
        assert len([n for n in l_branch if n.endswith(".attn.qkv.weight")]) == len(reference.blocks) == 12


def branch_pairs(crossvit, reference, per_encoder: int):
    """(ours, DeiT's) module pairs of CrossViT's branch 1, written out here apart from the converter."""
    pairs = [(crossvit.patch_embed[1].proj, reference.patch_embed.proj), (crossvit.norm[1], reference.norm)]
    pairs += [(crossvit.encoders[k].branches[1][i], reference.blocks[per_encoder * k + i])
              for k in range(len(crossvit.encoders)) for i in range(per_encoder)]
    return pairs


def test_a_deit_file_starts_crossvits_l_branch_and_the_rest_keeps_its_init(tiny, caplog):
    reference, path = tiny
    torch.manual_seed(3)
    fresh = timm.create_model("fusionvit_tiny_240").eval()
    torch.manual_seed(3)
    model = timm.create_model("fusionvit_tiny_240").eval()
    with caplog.at_level(logging.INFO, logger="src.models.pretrained"):
        loaded = models.load_branch_from_vit(model, path, branch=1)
    for ours, theirs in branch_pairs(model, reference, per_encoder=4):
        for (name, tensor), (_, expected) in zip(ours.state_dict().items(), theirs.state_dict().items()):
            torch.testing.assert_close(tensor, expected, rtol=0, atol=0, msg=name)
    torch.testing.assert_close(model.cls_token[1], reference.cls_token, rtol=0, atol=0)
    torch.testing.assert_close(model.pos_embed[1], reference.pos_embed, rtol=0, atol=0)  # 224 px, 14x14 both
    torch.testing.assert_close(model.head[1].weight, reference.head.weight, rtol=0, atol=0)
    for name, tensor in model.state_dict().items():
        if name not in loaded:
            torch.testing.assert_close(tensor, fresh.state_dict()[name], rtol=0, atol=0, msg=name)
    assert len(loaded) == len(reference.state_dict())
    others = len(model.state_dict()) - len(loaded)
    assert log_lines(caplog) == [
        f"branch 1 from a ViT checkpoint: loaded patch_embed.1, cls_token.1, pos_embed.1, 12 blocks "
        f"(encoders.0-2.branches.1), norm.1, head.1 ({len(loaded)} tensors); fresh branch 0, the fusion "
        f"(encoders.0-2.fusion, fusion=cross) ({others} tensors)"]


def test_a_branch_on_another_grid_gets_the_resampled_position_embedding_and_a_new_head(tiny, caplog):
    reference, path = tiny
    torch.manual_seed(3)
    model = timm.create_model("fusionvit_tiny_240", img_scale=(1.0, 1.0), num_classes=10, fusion="pairwise").eval()
    head = model.head[1].weight.clone()
    with caplog.at_level(logging.INFO, logger="src.models.pretrained"):
        models.load_branch_from_vit(model, path, branch=1)
    expected = resample_abs_pos_embed(reference.pos_embed, new_size=[15, 15], old_size=[14, 14], num_prefix_tokens=1)
    torch.testing.assert_close(model.pos_embed[1], expected, rtol=0, atol=0)
    torch.testing.assert_close(model.head[1].weight, head, rtol=0, atol=0)
    torch.testing.assert_close(model.encoders[2].branches[1][3].mlp.fc2.weight, reference.blocks[11].mlp.fc2.weight)
    (line,) = log_lines(caplog)
    assert "pos_embed.1 (resampled 14x14 -> 15x15)" in line
    assert line.endswith("fresh branch 0, the fusion (encoders.0-2.fusion, fusion=pairwise), head.1 (10 classes, "
                         f"the checkpoint has 1000) ({len(model.state_dict()) - len(reference.state_dict()) + 2} "
                         "tensors)")
    assert model(torch.randn(1, 3, 240, 240)).shape == (1, 10)


def test_a_vit_checkpoint_that_does_not_fit_says_why(tiny):
    reference, path = tiny
    with pytest.raises(ValueError, match=r"the ViT checkpoint has 12 blocks but branch 1 has 9 over its encoders"):
        models.load_branch_from_vit(timm.create_model("fusionvit_9_240"), path, branch=1)
    with pytest.raises(ValueError, match=r"does not fit branch 0: cls_token\.0 has shape \[1, 1, 192\] in the "
                                         r"checkpoint and \[1, 1, 96\] in the model; the branch needs the ViT's "
                                         r"width, patch size and MLP ratio \(it is 96 wide with 12-pixel patches\)"):
        models.load_branch_from_vit(timm.create_model("fusionvit_tiny_240", depth=((12, 1, 0),)), path, branch=0)
    with pytest.raises(ValueError, match=r"cannot start all 2 branches: load it into one with "
                                         r"src.models.load_branch_from_vit"):
        timm.create_model("fusionvit_tiny_240", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    distilled = dict(reference.state_dict(), dist_token=torch.zeros(1, 1, 192))
    with pytest.raises(ValueError, match=r"dist_token of the ViT checkpoint has no place in a FusionViT branch"):
        models.load_branch_from_vit(timm.create_model("fusionvit_tiny_240"), distilled, branch=1)
