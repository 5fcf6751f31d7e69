"""Three branches: every fusion runs and trains every parameter, ``cross`` equals the released CrossViT code's
3-branch model, and ``partners=all`` lets a CLS read every other branch in one fusion step."""
from pathlib import Path

import pytest
import timm
import torch

import src.models as models

from conftest import cls_after_first_fusion, opened_gates

MICRO3 = "fusionvit_micro3_32"
# (fusion, fusion_options): every strategy, and cross with each partner rule
CASES = [(name, {}) for name in models.fusion_names()] + [("cross", {"partners": "all"}),
                                                         ("gated_cross", {"partners": "all"})]
RELEASED = Path(__file__).parent / "data" / "crossvit_released_3branch.pt"


@pytest.mark.parametrize("fusion, options", CASES, ids=lambda case: case if isinstance(case, str) else
                         "-".join(f"{k}={v}" for k, v in case.items()) or "default")
def test_every_fusion_with_three_branches_reaches_every_parameter(fusion, options):
    model = opened_gates(timm.create_model(MICRO3, fusion=fusion, fusion_options=options, num_classes=7))
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    logits.square().sum().backward()
    no_grad = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []
    assert [tuple(t.shape[1:]) for t in model.forward_features(torch.randn(1, 3, 32, 32))] == [
        (1 + 64, 48), (1 + 16, 96), (1 + 4, 96)]


def test_cross_with_three_branches_equals_the_released_code():
    """tests/data/crossvit_released_3branch.pt holds the released IBM/CrossViT code's own model (3 branches, widths
    16/32/24, patches 4/8/16 at 32 px, one encoder with L = 0 and one with L = 2), its fp16 weights and its fp32
    logits on a seeded input, written by tests/data/make_crossvit_released_3branch.py from models/crossvit.py at
    commit 3f7ab77 on timm 1.0.31 (Block's ``drop=`` renamed ``proj_drop=``). Measured: max |diff| 4.5e-8."""
    reference = torch.load(RELEASED, weights_only=True)
    arch = reference["arch"]
    model = models.FusionViT(img_size=32, img_scale=(1.0, 1.0, 1.0), patch_size=arch["patch_size"],
                             embed_dim=arch["embed_dim"], depth=arch["depth"], num_heads=arch["num_heads"],
                             mlp_ratio=arch["mlp_ratio"], num_classes=arch["num_classes"], fusion="cross").eval()
    weights = {key: value.float() for key, value in reference["state_dict"].items()}
    model.load_state_dict(models.convert_crossvit_state_dict(weights), strict=True)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(reference["images_seed"]))
    with torch.no_grad():
        torch.testing.assert_close(model(images), reference["logits"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("partners, reaches", [("next", False), ("all", True)])
def test_branch_2_reaches_branch_0s_cls_in_one_fusion_only_with_partners_all(partners, reaches):
    # next: branch 0's CLS reads branch 1's patches; branch 2's reach it only in the next encoder
    model = timm.create_model(MICRO3, fusion_options={"partners": partners}, num_classes=10).eval()
    images = torch.randn(2, 3, 32, 32)
    clean = cls_after_first_fusion(model, images, branch=0)
    assert ((cls_after_first_fusion(model, images, branch=0, perturb_branch=2) - clean).abs().max() > 1e-4) == reaches
    assert (cls_after_first_fusion(model, images, branch=0, perturb_branch=1) - clean).abs().max() > 1e-4


def test_partners_all_with_two_branches_is_next_parameter_names_included():
    torch.manual_seed(0)
    next_partner = timm.create_model("fusionvit_micro_32", num_classes=10).eval()
    every_partner = timm.create_model("fusionvit_micro_32", fusion_options={"partners": "all"}, num_classes=10).eval()
    every_partner.load_state_dict(next_partner.state_dict(), strict=True)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(every_partner(images), next_partner(images), rtol=0, atol=0)


def test_three_branch_model_scripts_and_exposes_three_feature_maps():
    model = timm.create_model(MICRO3, fusion_options={"partners": "all"}, num_classes=10).eval()
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(model)(images), model(images))
    features = timm.create_model(MICRO3, features_only=True).eval()
    assert [tuple(f.shape[1:]) for f in features(images)] == [(48, 8, 8), (96, 4, 4), (96, 2, 2)]
    assert timm.models.get_pretrained_cfg(MICRO3).classifier == ("head.0", "head.1", "head.2")


def test_a_depth_entry_without_l_means_l_0_for_any_branch_count():
    torch.manual_seed(0)
    stated = timm.create_model(MICRO3, depth=((1, 2, 1, 0),) * 2)
    torch.manual_seed(0)
    short = timm.create_model(MICRO3, depth=((1, 2, 1),) * 2)
    assert stated.state_dict().keys() == short.state_dict().keys()
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(stated.eval()(images), short.eval()(images))
