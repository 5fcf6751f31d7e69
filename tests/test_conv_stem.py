"""The 3-conv (dagger) patch embedding: timm's own for 12 and 16, and the patch-8 one the CPU proxy uses."""
import pytest
import timm
import torch
from timm.models.crossvit import PatchEmbed

import src.models  # noqa: F401  (registers fusionvit_*)
from src.models.conv_stem import build_patch_embed, dagger_strides


@pytest.mark.parametrize("patch", [12, 16])
def test_the_released_patch_sizes_are_timms_stem(patch):
    ours = build_patch_embed(img_size=patch * 4, patch_size=patch, in_chans=3, embed_dim=96, multi_conv=True)
    reference = PatchEmbed(img_size=patch * 4, patch_size=patch, in_chans=3, embed_dim=96, multi_conv=True)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
        [(k, v.shape) for k, v in reference.state_dict().items()]
    ours.load_state_dict(reference.state_dict())
    image = torch.randn(2, 3, patch * 4, patch * 4)
    torch.testing.assert_close(ours(image), reference(image), rtol=0, atol=0)


def test_released_strides_are_what_the_rule_gives():
    assert dagger_strides(12) == (4, 3, 1) and dagger_strides(16) == (4, 2, 2)  # timm's / the released code's


@pytest.mark.parametrize("patch, strides", [(4, (4, 1, 1)), (8, (4, 2, 1)), (32, (4, 4, 2))])
def test_other_patch_sizes_cover_the_patch_with_the_released_key_names(patch, strides):
    embed = build_patch_embed(img_size=32, patch_size=patch, in_chans=3, embed_dim=48, multi_conv=True)
    convs = [conv for conv in embed.proj if isinstance(conv, torch.nn.Conv2d)]
    assert tuple(conv.stride[0] for conv in convs) == strides == dagger_strides(patch)
    assert all(conv.kernel_size[0] >= conv.stride[0] for conv in convs)  # no pixel skipped
    assert sorted(embed.state_dict()) == [f"proj.{i}.{p}" for i in (0, 2, 4) for p in ("bias", "weight")]
    grid = 32 // patch
    assert embed(torch.randn(2, 3, 32, 32)).shape == (2, grid * grid, 48)  # the linear embedding's grid


def test_a_dagger_micro_model_trains_and_shares_its_branches_with_the_linear_one_beyond_the_stem():
    torch.manual_seed(0)
    dagger = timm.create_model("fusionvit_micro_p8_32", multi_conv=True, num_classes=10)
    torch.manual_seed(0)
    linear = timm.create_model("fusionvit_micro_p8_32", num_classes=10)
    shared = {k for k in linear.state_dict() if not k.startswith("patch_embed.")}
    assert all(torch.equal(dagger.state_dict()[k], linear.state_dict()[k]) for k in shared)  # per-part init
    optimizer = torch.optim.AdamW(dagger.parameters(), lr=1e-3)
    images, labels = torch.randn(8, 3, 32, 32), torch.arange(8) % 10
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(dagger(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(p.grad is not None for p in dagger.patch_embed.parameters())
