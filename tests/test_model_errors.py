"""Bad architecture or input fails before any work with a message naming the value and the fix."""
import pytest
import timm
import torch

import src.models as models


@pytest.mark.parametrize("kwargs, message", [
    (dict(patch_size=(12, 8)), r"patch size 12 does not divide image size 32 of branch 0: pick a patch size from "
                               r"1, 2, 4, 8, 16, 32"),
    (dict(embed_dim=(50, 96)), r"width 50 of branch 0 is not divisible by its 3 heads: pick num_heads from"),
    (dict(fusion="concat"),
     r"unknown fusion 'concat': pick one of all_attn, cls_token, cross, gated_cross, none, pairwise"),
    (dict(fusion="cls_token", fusion_layers=2),
     r"fusion 'cls_token' does not take layers: it takes identity_when_equal"),
    (dict(fusion="none", fusion_layers=2), r"fusion 'none' does not take layers: it takes no options"),
    (dict(fusion="pairwise", fusion_options=dict(order="sideways")),
     r"order='sideways' for pairwise: pick one of project_first, resample_first"),
    (dict(fusion="cross", fusion_options=dict(stacking="deep")),
     r"stacking='deep' for cross: pick one of released, reattend"),
    (dict(fusion="all_attn", fusion_options=dict(mlp_ratio=-1)), r"mlp_ratio must be >= 0 for all_attn"),
    (dict(depth=((1,),)), r"depth\[0\]=\[1\] is not \(N, M\) or \(N, M, L\)"),
    (dict(depth=((1, 2, 1, 0),)), r"depth\[0\]=\[1, 2, 1, 0\] is not \(N, M\) or \(N, M, L\) for 2 branches"),
    (dict(patch_size=(4, 8, 16), img_scale=(1, 1, 1), embed_dim=(48, 96, 96), num_heads=(3, 3, 3), depth=((1, 2),)),
     r"depth\[0\]=\[1, 2\] is not \(d_0, d_1, d_2\) or \(d_0, d_1, d_2, L\) for 3 branches: give each "
     r"branch's block count"),
    (dict(patch_size=(4, 8, 16)), r"model.img_scale has 2 entries but model.patch_size has 3: give one per branch"),
    (dict(patch_size=(4, 8, 16), img_scale=(1, 1, 1)),
     r"model.embed_dim has 2 entries but model.patch_size has 3: give one per branch"),
    (dict(mlp_ratio=(3, 3, 1, 1)), r"model.mlp_ratio has 4 entries but model.patch_size has 2: give one per branch, "
                                   r"optionally followed by the fusion's"),
    (dict(patch_size=(), img_scale=(), embed_dim=(), num_heads=()), r"model.patch_size is empty: give one patch size "
                                                                   r"per branch"),
    (dict(patch_size=(4,), img_scale=(1,), embed_dim=(48,), num_heads=(3,), mlp_ratio=(3,), fusion="cross"),
     r"fusion=cross needs at least 2 branches .*: a single-branch model is a plain ViT, build it with fusion=none"),
    (dict(fusion="pairwise", fusion_options=dict(partners="all")),
     r"fusion 'pairwise' does not take partners: it takes .*; drop fusion.options.partners, or pick a strategy "
     r"that takes it \(cross"),
    (dict(fusion="cross", fusion_options=dict(partners="every")), r"partners='every' for cross: pick one of next, all"),
    (dict(multi_conv=True, img_size=48, patch_size=(6, 12)),
     r"the 3-conv \(dagger\) patch embedding needs a patch size that is a multiple of 4 \(its first conv has stride "
     r"4\), not 6: set multi_conv=false"),
    (dict(embed_dim=(48, 96, 192)), r"model.embed_dim has 3 entries but model.patch_size has 2"),
])
def test_bad_architecture_is_rejected_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        timm.create_model("fusionvit_micro_32", **kwargs)


def test_scaled_image_size_is_checked_for_the_large_branch():
    # 240 * 224/240 = 224 is not a multiple of 12
    with pytest.raises(ValueError, match=r"patch size 12 does not divide image size 224 of branch 1 \(image scaled"):
        timm.create_model("fusionvit_small_240", patch_size=(16, 12))


def test_wrong_input_resolution_names_the_expected_one():
    model = timm.create_model("fusionvit_micro_32")
    with pytest.raises(ValueError, match=r"expected \[batch, channels, 32, 32\].*img_size=64"):
        model(torch.randn(1, 3, 64, 64))


def test_pretrained_without_a_file_names_what_to_give_for_a_variant_with_no_published_weights():
    with pytest.raises(ValueError, match=r"fusionvit_micro_32 has no published weights: .*pretrained_cfg_overlay"):
        timm.create_model("fusionvit_micro_32", pretrained=True)


def test_missing_pretrained_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at .*missing\.pth"):
        timm.create_model("fusionvit_micro_32", pretrained=True,
                          pretrained_cfg_overlay=dict(file=str(tmp_path / "missing.pth")))


@pytest.mark.parametrize("pool", ["max", ""])
def test_unknown_global_pool_lists_the_choices(pool):
    with pytest.raises(ValueError, match=r"global_pool=.*pick one of 'token' .* or 'avg'"):
        timm.create_model("fusionvit_micro_32", global_pool=pool)
    model = timm.create_model("fusionvit_micro_32")
    with pytest.raises(ValueError, match=r"pick one of 'token'"):
        model.reset_classifier(10, pool)


def test_missing_checkpoint_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no CrossViT checkpoint at .*missing.pth"):
        models.convert_crossvit_state_dict(tmp_path / "missing.pth")
