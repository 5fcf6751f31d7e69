"""Starting from CrossViT weights through timm's own ``pretrained=True`` path, with files the tests write: timm's
``CrossVit`` at the micro size stands in for the hub weights (no network here)."""
import logging

import pytest
import timm
import torch
from timm.layers import resample_abs_pos_embed
from timm.models.crossvit import CrossVit

import src.models as models
from src.models.variants import PAPER_VARIANTS
from src.train.build import build_model

from conftest import compose_config

MICRO = dict(img_size=32, img_scale=(1.0, 1.0), patch_size=(4, 8), embed_dim=(48, 96), depth=((1, 2, 0),) * 2,
             num_heads=(3, 3), mlp_ratio=(3, 3, 1))


@pytest.fixture(scope="module")
def crossvit(tmp_path_factory):
    """timm's CrossVit (micro size) and its weights saved as timm does and as the official release does."""
    torch.manual_seed(1)
    reference = CrossVit(**MICRO).eval()
    folder = tmp_path_factory.mktemp("weights")
    torch.save(reference.state_dict(), folder / "timm.pth")
    official = {k.replace("cls_token_", "cls_token.").replace("pos_embed_", "pos_embed."): v
                for k, v in reference.state_dict().items()}
    torch.save({"model": official, "epoch": 299}, folder / "official.pth")
    return reference, folder


def start(path, **kwargs):
    return timm.create_model("fusionvit_micro_32", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                             **kwargs).eval()


@pytest.mark.parametrize("layout", ["timm.pth", "official.pth"])
def test_cross_started_from_a_crossvit_file_gives_its_logits(crossvit, layout):
    reference, folder = crossvit
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(start(folder / layout)(images), reference(images), rtol=0, atol=1e-5)


def test_new_classes_and_image_size_reinitialise_the_head_and_resample_position_embeddings(crossvit):
    reference, folder = crossvit
    model = start(folder / "timm.pth", num_classes=10, img_size=64)
    expected = resample_abs_pos_embed(reference.pos_embed_0, new_size=[16, 16], old_size=[8, 8], num_prefix_tokens=1)
    torch.testing.assert_close(model.pos_embed[0], expected)
    assert model.head[0].weight.shape == (10, 48) and model(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    torch.testing.assert_close(model.encoders[1].branches[1][0].mlp.fc1.weight,
                               reference.blocks[1].blocks[1][0].mlp.fc1.weight)


@pytest.mark.parametrize("fusion", ["all_attn", "pairwise"])
def test_another_fusion_loads_the_branches_and_starts_its_fusion_fresh(crossvit, fusion, caplog):
    reference, folder = crossvit
    torch.manual_seed(3)
    fresh = timm.create_model("fusionvit_micro_32", fusion=fusion)
    torch.manual_seed(3)
    with caplog.at_level(logging.INFO, logger="src.models.pretrained"):
        model = start(folder / "timm.pth", fusion=fusion)
    converted = models.convert_crossvit_state_dict(reference.state_dict())
    for name, tensor in model.state_dict().items():
        expected = fresh.state_dict()[name] if ".fusion." in name else converted[name]
        torch.testing.assert_close(tensor, expected, rtol=0, atol=0, msg=name)
    lines = [r.getMessage() for r in caplog.records if "fresh" in r.getMessage()]
    fusion_tensors = sum(".fusion." in k for k in fresh.state_dict())
    assert lines == [f"start from pretrained weights: loaded {len(fresh.state_dict()) - fusion_tensors} of "
                     f"{len(fresh.state_dict())} tensors; fresh encoders.0.fusion, encoders.1.fusion ({fusion_tensors} "
                     f"tensors): fusion={fusion}, the checkpoint's is cross"]


def test_a_checkpoint_of_another_width_loads_the_branch_that_fits_and_names_the_other(crossvit, caplog):
    reference, folder = crossvit
    with caplog.at_level(logging.INFO, logger="src.models.pretrained"):
        model = start(folder / "timm.pth", embed_dim=(64, 96), num_heads=(4, 3))
    torch.testing.assert_close(model.encoders[1].branches[1][0].mlp.fc1.weight,
                               reference.blocks[1].blocks[1][0].mlp.fc1.weight)
    line = next(r.getMessage() for r in caplog.records if "fresh" in r.getMessage())
    assert "(31 tensors): branch 0 is 64 wide, 48 in the checkpoint" in line
    assert "encoders.0.fusion, encoders.1.fusion (40 tensors): the branches are 64/96 wide, 48/96 in the" in line
    with pytest.raises(ValueError, match=r"does not fit fusionvit_micro_32: none of its branch tensors fits .*it fits "
                                         r"fusionvit_micro_16 or fusionvit_micro_32 as registered"):
        start(folder / "timm.pth", embed_dim=(64, 128), num_heads=(4, 4))


@pytest.mark.parametrize("name", PAPER_VARIANTS)
def test_paper_variants_point_at_timms_crossvit_weights_through_the_converter(name):
    ours = timm.models.get_pretrained_cfg(name)
    theirs = timm.models.get_pretrained_cfg(name.replace("fusionvit_", "crossvit_"))
    assert (ours.hf_hub_id, ours.tag, ours.num_classes, ours.mean) == (
        theirs.hf_hub_id, theirs.tag, theirs.num_classes, theirs.mean)


def test_the_finetune_preset_needs_a_checkpoint_and_starts_the_swapped_fusion_from_it(tmp_path):
    with pytest.raises(ValueError, match=r"model.pretrained is required .*model.pretrained=PATH"):
        build_model(compose_config(["+experiment=finetune_fusion_cpu"]))
    reference = timm.create_model("crossvit_9_240")
    torch.save(reference.state_dict(), tmp_path / "crossvit_9_240.pth")
    cfg = compose_config(["+experiment=finetune_fusion_cpu", "fusion=cls_token",
                          f"model.pretrained={tmp_path / 'crossvit_9_240.pth'}"])
    model = build_model(cfg)
    assert (model.fusion_name, model.img_size, model.num_classes) == ("cls_token", 48, 10)
    torch.testing.assert_close(model.pos_embed[1], resample_abs_pos_embed(
        reference.pos_embed_1, new_size=[3, 3], old_size=[14, 14], num_prefix_tokens=1))
    torch.testing.assert_close(model.encoders[2].branches[1][2].attn.qkv.weight,
                               reference.blocks[2].blocks[1][2].attn.qkv.weight)
