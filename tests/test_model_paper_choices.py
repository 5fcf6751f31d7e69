"""The choices that make our models the ones the paper measured: identity projections between equal widths,
the released stacking of cross-attention layers (timm's CrossVit with L = 2), the order of pairwise fusion,
the model without CLS tokens, and each branch's head alone."""
import pytest
import timm
import torch

import src.models as models

from conftest import opened_gates

FUSIONS = models.fusion_names()


def _small(**kwargs):
    return timm.create_model("fusionvit_small_240", **kwargs).eval()


def _small_shapes(**kwargs):
    """CrossViT-S on the meta device: the tests that only count parameters or FLOPs need shapes, not weights."""
    with torch.device("meta"):
        return _small(**kwargs)


def test_released_stacking_of_two_cross_attention_layers_equals_timm():
    reference = timm.create_model("crossvit_small_240", depth=((1, 4, 2),) * 3).eval()
    ours = _small(depth=((1, 4, 2),) * 3)
    ours.load_state_dict(models.convert_crossvit_state_dict(reference.state_dict()), strict=True)
    images = torch.randn(2, 3, 240, 240)
    with torch.no_grad():
        torch.testing.assert_close(ours(images), reference(images), rtol=0, atol=1e-4)


def test_reattending_layers_differ_from_the_released_ones_only_beyond_the_first():
    images = torch.randn(2, 3, 32, 32)
    outputs = {}
    for layers in (1, 2):
        for stacking in ("released", "reattend"):
            torch.manual_seed(0)
            model = timm.create_model("fusionvit_micro_32", fusion_layers=layers, num_classes=10,
                                      fusion_options=dict(stacking=stacking)).eval()
            with torch.no_grad():
                outputs[layers, stacking] = model(images)
    torch.testing.assert_close(outputs[1, "released"], outputs[1, "reattend"], rtol=0, atol=0)
    assert (outputs[2, "released"] - outputs[2, "reattend"]).abs().max() > 1e-4


def test_reattending_costs_more_flops_and_the_released_stacking_costs_what_one_layer_does():
    gmacs = {name: models.count_flops(_small_shapes(**kwargs), (3, 240, 240)) for name, kwargs in {
        "L1": {}, "L2": dict(depth=((1, 4, 2),) * 3),
        "L2_reattend": dict(depth=((1, 4, 2),) * 3, fusion_options=dict(stacking="reattend"))}.items()}
    assert gmacs["L2"] == pytest.approx(gmacs["L1"], abs=0.01)  # paper Table 7 D: 5.6 G, as L = 1
    assert gmacs["L2_reattend"] > gmacs["L2"] + 0.2


@pytest.mark.parametrize("fusion, identity_params_m, projecting_params_m", [
    ("cls_token", 24.19, 25.08), ("pairwise", 24.19, 25.08), ("all_attn", 25.96, 26.86)])
def test_identity_projections_between_equal_widths_drop_the_large_branch_projections(
        fusion, identity_params_m, projecting_params_m):
    counts = {identity: models.count_params(_small_shapes(
        fusion=fusion, fusion_options=dict(identity_when_equal=identity))) for identity in (True, False)}
    assert counts[True] / 1e6 == pytest.approx(identity_params_m, abs=0.01)
    assert counts[False] / 1e6 == pytest.approx(projecting_params_m, abs=0.01)
    # per encoder: f and g of the 384-wide branch, each LayerNorm(384) + Linear(384, 384)
    assert counts[False] - counts[True] == 3 * 2 * (2 * 384 + 384 * 384 + 384)


def test_identity_projections_change_nothing_when_the_widths_differ():
    with_identity = _small_shapes(fusion="cross", fusion_options=dict(identity_when_equal=True))
    without = _small_shapes(fusion="cross", fusion_options=dict(identity_when_equal=False))
    assert models.count_params(with_identity) == models.count_params(without)


def test_pairwise_projects_before_resampling_by_default_which_costs_less():
    project_first = models.count_flops(_small_shapes(fusion="pairwise"), (3, 240, 240))
    resample_first = models.count_flops(_small_shapes(fusion="pairwise", fusion_options=dict(order="resample_first")),
                                        (3, 240, 240))
    assert project_first == pytest.approx(5.5, abs=0.05)  # paper Table 6
    assert resample_first > project_first + 0.03


@pytest.mark.parametrize("fusion", FUSIONS)
def test_every_fusion_works_without_cls_tokens(fusion):
    model = opened_gates(timm.create_model("fusionvit_micro_32", fusion=fusion, class_token=False, num_classes=10))
    assert len(model.cls_token) == 0
    assert all(p.shape[1] == g for p, g in zip(model.pos_embed, (64, 16)))  # patch tokens only
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    logits.square().sum().backward()
    assert [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []


@pytest.mark.parametrize("fusion", FUSIONS)
def test_without_cls_the_small_branch_reaches_the_large_branch_only_through_fusion(fusion):
    model = opened_gates(timm.create_model("fusionvit_micro_32", fusion=fusion, class_token=False, num_classes=10))
    model.eval()
    images = torch.randn(2, 3, 32, 32)
    captured = []
    model.encoders[0].register_forward_hook(lambda module, inputs, out: captured.append(out[1].mean(1)))
    noise = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model(images)
        model.patch_embed[0].register_forward_hook(lambda module, inputs, out: out + torch.randn(
            out.shape, generator=noise))
        model(images)
    clean, noisy = captured
    if fusion == "none":
        torch.testing.assert_close(noisy, clean, rtol=0, atol=0)
    else:
        assert (noisy - clean).abs().max() > 1e-4


def test_without_cls_the_fused_agent_becomes_the_mean_patch_token():
    from src.models.fusion.base import fuse_with_mean_agents

    class ReplaceAgent(torch.nn.Module):  # a fusion that sets every agent to a constant
        def forward(self, tokens):
            return [torch.cat([torch.full_like(t[:, :1], 3.0), t[:, 1:]], dim=1) for t in tokens]

    patches = [torch.randn(2, 5, 4), torch.randn(2, 3, 4)]
    fused = fuse_with_mean_agents(ReplaceAgent(), patches)
    for before, after in zip(patches, fused):
        torch.testing.assert_close(after.mean(1), torch.full((2, 4), 3.0))
        torch.testing.assert_close(after - after.mean(1, keepdim=True), before - before.mean(1, keepdim=True))


def test_without_cls_the_head_reads_the_mean_patch_token():
    model = timm.create_model("fusionvit_micro_32", class_token=False, num_classes=10).eval()
    tokens = [torch.randn(2, 64, 48), torch.randn(2, 16, 96)]
    expected = torch.stack([model.head[0](tokens[0].mean(1)), model.head[1](tokens[1].mean(1))]).mean(0)
    torch.testing.assert_close(model.forward_head(tokens), expected)


@pytest.mark.parametrize("class_token", [True, False])
def test_branch_logits_are_each_head_alone_and_average_to_the_logits(class_token):
    model = timm.create_model("fusionvit_micro_32", class_token=class_token, num_classes=10).eval()
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        branch_logits, logits, features = model.forward_branches(images), model(images), model.forward_features(images)
    assert branch_logits.shape == (2, 3, 10)
    torch.testing.assert_close(branch_logits.mean(0), logits, rtol=0, atol=0)
    pooled = features[0][:, 0] if class_token else features[0].mean(1)
    torch.testing.assert_close(branch_logits[0], model.head[0](pooled))
