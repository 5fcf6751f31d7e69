"""Every fusion strategy on several variants: shapes, finiteness, gradients, information flow, cost growth."""
import pytest
import timm
import torch

import src.models as models
from src.models.fusion import BranchSpec, FusionOptions, build_fusion

from conftest import cls_after_first_fusion, opened_gates

FUSIONS = models.fusion_names()
# CPU variants plus one paper variant with the dagger embedding and a rescaled L-branch
VARIANTS = ["fusionvit_micro_32", "fusionvit_mini_32", "fusionvit_9_dagger_240"]


def test_the_five_paper_strategies_are_registered():
    assert set(FUSIONS) >= {"none", "all_attn", "cls_token", "pairwise", "cross"}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("fusion", FUSIONS)
def test_forward_backward_reaches_every_parameter(variant, fusion):
    model = timm.create_model(variant, fusion=fusion, num_classes=7)
    if variant.endswith("_240"):  # keep the big variant cheap: one encoder
        model = timm.create_model(variant, fusion=fusion, num_classes=7, depth=((1, 1, 0),))
    opened_gates(model)
    images = torch.randn(2, 3, model.img_size, model.img_size)
    logits = model(images)
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()
    logits.square().sum().backward()
    no_grad = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


@pytest.mark.parametrize("fusion", FUSIONS)
def test_small_branch_information_reaches_large_cls_only_through_fusion(fusion):
    model = opened_gates(timm.create_model("fusionvit_micro_32", fusion=fusion, num_classes=10).eval())
    images = torch.randn(2, 3, 32, 32)
    clean = cls_after_first_fusion(model, images, branch=1)
    noisy = cls_after_first_fusion(model, images, branch=1, perturb_branch=0)
    if fusion == "none":
        torch.testing.assert_close(noisy, clean, rtol=0, atol=0)
    else:
        assert (noisy - clean).abs().max() > 1e-4


def _fusion_gmacs(fusion, grid_small, grid_large, dim=(96, 192), heads=(3, 3)):
    module = build_fusion(fusion, [BranchSpec(dim[0], heads[0], grid_small), BranchSpec(dim[1], heads[1], grid_large)],
                          FusionOptions()).eval()
    tokens = [torch.zeros(1, 1 + grid_small[0] * grid_small[1], dim[0]),
              torch.zeros(1, 1 + grid_large[0] * grid_large[1], dim[1])]
    with torch.utils.flop_counter.FlopCounterMode(display=False) as counter, torch.no_grad():
        module(tokens)
    return counter.get_total_flops() / 2e9


def test_all_attention_cost_grows_quadratically_and_cross_attention_linearly():
    import math

    # the image side doubles: 4x the tokens; slope of log(cost) vs log(tokens): 1 linear, 2 quadratic
    small_image = dict(grid_small=(32, 32), grid_large=(16, 16))
    large_image = dict(grid_small=(64, 64), grid_large=(32, 32))
    token_growth = (1 + 64 * 64 + 1 + 32 * 32) / (1 + 32 * 32 + 1 + 16 * 16)
    slope = {f: math.log(_fusion_gmacs(f, **large_image) / _fusion_gmacs(f, **small_image)) / math.log(token_growth)
             for f in ("cross", "gated_cross", "all_attn")}
    assert 0.9 < slope["cross"] < 1.1, slope  # CLS-only queries: only the K/V projections grow
    assert 0.9 < slope["gated_cross"] < 1.1, slope  # cross plus a per-channel gate on the CLS
    assert slope["all_attn"] > 1.7, slope  # the N^2 attention dominates


def test_count_flops_by_module_splits_out_every_fusion_step():
    model = timm.create_model("fusionvit_mini_32", fusion="all_attn", num_classes=10)
    report = models.count_flops(model, (3, 32, 32), by_module=True)
    steps = [k for k in report if k.startswith("encoders.")]
    assert len(steps) == len(model.encoders) == 3
    assert report["fusion"] == pytest.approx(sum(report[k] for k in steps))
    assert 0 < report["fusion"] < report["total"] == pytest.approx(models.count_flops(model, (3, 32, 32)))


def test_fusion_layers_stack_attention_for_cross_and_all_attn():
    for fusion in ("cross", "all_attn"):
        one = timm.create_model("fusionvit_micro_32", fusion=fusion, fusion_layers=1)
        two = timm.create_model("fusionvit_micro_32", fusion=fusion, fusion_layers=2)
        assert models.count_params(two) > models.count_params(one)
    # CrossViT's depth triple carries L too (0 means 1)
    from_depth = timm.create_model("fusionvit_micro_32", depth=((1, 2, 2),) * 2)
    assert models.count_params(from_depth) == models.count_params(
        timm.create_model("fusionvit_micro_32", fusion_layers=2))


def test_a_new_strategy_is_one_registered_class(monkeypatch):
    from src.models.fusion import Fusion, registry

    monkeypatch.setattr(registry, "_FUSIONS", dict(registry._FUSIONS))

    @registry.register_fusion("swap_cls")
    class SwapClassTokens(Fusion):
        def __init__(self, branches, options, scale: float = 1.0):
            super().__init__(branches, options)
            self.projs = torch.nn.ModuleList([torch.nn.Linear(a.dim, b.dim) for a, b in
                                              zip(branches, branches[1:] + branches[:1])])

        def forward(self, tokens):
            moved = [proj(t[:, :1]) for proj, t in zip(self.projs, tokens)]
            return [torch.cat([moved[i - 1], t[:, 1:]], 1) for i, t in enumerate(tokens)]

    model = timm.create_model("fusionvit_micro_32", fusion="swap_cls", fusion_options={"scale": 2.0})
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 1000)
    assert "swap_cls" in models.fusion_names()


@pytest.mark.parametrize("fusion", ["all_attn", "cls_token", "pairwise"])
def test_residual_option_adds_each_branchs_own_tokens_back(fusion):
    """``residual=True`` (not the paper's) is ``x^i + fused^i`` with the very same weights; the default keeps
    the paper's equation, whose output does not contain ``x^i``."""
    branches = [BranchSpec(48, 3, (4, 4)), BranchSpec(96, 3, (2, 2))]
    torch.manual_seed(0)
    paper = build_fusion(fusion, branches, FusionOptions())
    torch.manual_seed(0)
    with_residual = build_fusion(fusion, branches, FusionOptions(), residual=True)
    tokens = [torch.randn(2, 17, 48), torch.randn(2, 5, 96)]
    for plain, added, x in zip(paper(tokens), with_residual(tokens), tokens):
        if fusion == "cls_token":  # only the CLS token is fused; the patch tokens pass through either way
            torch.testing.assert_close(added[:, 1:], plain[:, 1:])
            torch.testing.assert_close(added[:, :1], x[:, :1] + plain[:, :1])
        else:
            torch.testing.assert_close(added, x + plain)


def test_gated_cross_starts_as_no_fusion_and_its_closed_gate_still_learns():
    """Flamingo's tanh gate at zero: the logits are ``none``'s for the same branch weights, the gate gets a
    gradient (tanh'(0) = 1) while the cross-attention behind it gets none yet; opened, the logits differ."""
    torch.manual_seed(0)
    gated = timm.create_model("fusionvit_micro_32", fusion="gated_cross", num_classes=10)
    plain = timm.create_model("fusionvit_micro_32", fusion="none", num_classes=10)
    missing, unexpected = plain.load_state_dict(gated.state_dict(), strict=False)
    assert missing == [] and unexpected and all(".fusion." in key for key in unexpected)
    images = torch.randn(2, 3, 32, 32)
    logits = gated(images)
    with torch.no_grad():
        torch.testing.assert_close(logits, plain(images), rtol=0, atol=0)
    logits.square().sum().backward()
    for name, parameter in gated.named_parameters():
        if name.endswith(".alpha"):
            assert parameter.grad.abs().sum() > 0, name
        elif ".fusion.cross." in name:
            assert not parameter.grad.any(), name
    with torch.no_grad():
        assert (opened_gates(gated, alpha=0.1)(images) - plain(images)).abs().max() > 1e-4
