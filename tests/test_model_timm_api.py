"""The timm model contract, pinned against timm itself: pooling and classifier reset, branch-major
intermediates and pruning, TorchScript and FX for every fusion, attention maps through timm's
``AttentionExtract``, layer-wise lr decay through timm's optimizer factory."""
import pytest
import timm
import timm.optim
import torch
from timm.layers import set_fused_attn
from timm.models._features_fx import GraphExtractNet, get_graph_node_names
from timm.utils import AttentionExtract

import src.models as models

from conftest import opened_gates

FUSIONS = models.fusion_names()
MICRO = "fusionvit_micro_32"


@pytest.fixture(scope="module", params=FUSIONS)
def micro(request):
    torch.manual_seed(0)
    return opened_gates(timm.create_model(MICRO, fusion=request.param, num_classes=10).eval())


def test_pooling_and_classifier_reset_follow_crossvit(micro):
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        tokens = micro.forward_features(images)
        assert torch.equal(micro.forward_head(tokens, pre_logits=True), torch.cat([t[:, 0] for t in tokens], 1))
        model = timm.create_model(MICRO, fusion=micro.fusion_name, num_classes=0, global_pool="avg").eval()
        model.load_state_dict({k: v for k, v in micro.state_dict().items() if not k.startswith("head.")})
        torch.testing.assert_close(model(images), torch.cat([t[:, 1:].mean(1) for t in tokens], 1))
        model.reset_classifier(3)  # keeps the pooling
        assert model.global_pool == "avg" and model(images).shape == (1, 3)
        model.reset_classifier(0, "token")
        torch.testing.assert_close(model(images), micro.forward_head(tokens, pre_logits=True))
    assert model.num_features == model.head_hidden_size == 48 + 96


def test_intermediates_are_branch_major_and_pruning_keeps_each_tap(micro):
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        final, taps = micro.forward_intermediates(images)
        for a, b in zip(final, micro.forward_features(images)):
            torch.testing.assert_close(a, b)
        # index b * K + k: branch b after encoder k; 4-pixel patches give 8x8 maps, 8-pixel ones 4x4
        assert [tuple(t.shape[1:]) for t in taps] == [(48, 8, 8)] * 2 + [(96, 4, 4)] * 2
        assert [(f["num_chs"], f["reduction"]) for f in micro.feature_info] == [(48, 4)] * 2 + [(96, 8)] * 2
        early = micro.forward_intermediates(images, indices=[2], stop_early=True, intermediates_only=True)
        torch.testing.assert_close(early[0], taps[2])
        pruned = timm.create_model(MICRO, fusion=micro.fusion_name, num_classes=10).eval()
        pruned.load_state_dict(micro.state_dict())
        assert pruned.prune_intermediate_layers([0]) == [0] and len(pruned.encoders) == 1
        torch.testing.assert_close(pruned.forward_intermediates(images, [0], intermediates_only=True)[0], taps[0])
        getter = timm.create_model(MICRO, fusion=micro.fusion_name, features_only=True).eval()
        assert [tuple(f.shape[1:]) for f in getter(images)] == [(48, 8, 8), (96, 4, 4)]  # last of each branch


def test_torchscript_fx_and_grad_checkpointing_give_the_eager_logits(micro):
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = micro(images)
        torch.testing.assert_close(torch.jit.script(micro)(images), expected)
        last_node = get_graph_node_names(micro)[1][-1]
        torch.testing.assert_close(GraphExtractNet(micro, [last_node])(images), expected)
    micro.set_grad_checkpointing(True)
    try:
        torch.testing.assert_close(micro(images), expected)
    finally:
        micro.set_grad_checkpointing(False)


@pytest.mark.parametrize("fusion", ["cross", "all_attn"])
def test_attention_maps_are_read_with_timms_attention_extract(fusion):
    torch.manual_seed(0)
    fused = timm.create_model(MICRO, fusion=fusion, num_classes=10).eval()
    set_fused_attn(False)  # timm's switch: explicit softmax nodes, read by FX
    try:
        torch.manual_seed(0)
        model = timm.create_model(MICRO, fusion=fusion, num_classes=10).eval()
    finally:
        set_fused_attn(True)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(images), fused(images), rtol=1e-5, atol=1e-5)
        maps = AttentionExtract(model, names=["*fusion*attn.softmax"])(images)
    if fusion == "cross":  # 2 encoders x 2 branches; each CLS looks over [CLS ; the other branch's patches]
        assert list(maps) == [f"encoders.{k}.fusion.layers.{b}.0.attn.softmax" for k in range(2) for b in range(2)]
        assert [tuple(m.shape) for m in maps.values()] == [(2, 3, 1, 1 + 16), (2, 3, 1, 1 + 64)] * 2
    else:  # one joint attention over both branches' tokens per encoder
        assert [tuple(m.shape) for m in maps.values()] == [(2, 3, 82, 82)] * 2
    for attention in maps.values():
        torch.testing.assert_close(attention.sum(-1), torch.ones(attention.shape[:-1]))


def test_group_matcher_gives_layer_decay_through_timms_optimizer_factory():
    model = timm.create_model(MICRO, num_classes=10)
    optimizer = timm.optim.create_optimizer_v2(model, "adamw", lr=1e-3, layer_decay=0.5)
    scale = {id(p): group["lr_scale"] for group in optimizer.param_groups for p in group["params"]}
    named = dict(model.named_parameters())
    stem, first, second, head = (scale[id(named[n])] for n in (
        "patch_embed.0.proj.weight", "encoders.0.fusion.projs.0.2.weight", "encoders.1.branches.1.0.mlp.fc1.weight",
        "head.0.weight"))
    assert (stem, first, second, head) == (0.125, 0.25, 0.5, 1.0)


def test_paper_variant_contract_on_the_meta_device():
    with torch.device("meta"):
        model = timm.create_model("fusionvit_9_240", device="meta", global_pool="avg")
        pooled = model(torch.empty(1, 3, 240, 240))
        taps = model.forward_intermediates(torch.empty(1, 3, 240, 240), intermediates_only=True)
    assert pooled.shape == (1, 1000) and model.global_pool == "avg"
    assert [tuple(t.shape[1:]) for t in taps] == [(128, 20, 20)] * 3 + [(256, 14, 14)] * 3
    model.reset_classifier(0)
    assert model.forward_head(model.forward_features(torch.empty(1, 3, 240, 240, device="meta"))).shape == (1, 384)
