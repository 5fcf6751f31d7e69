"""Our `cross` model is CrossViT: same parameters and logits as timm's crossvit_* with converted weights, the
official release's checkpoint layout loads, and parameter/FLOP counts match the paper's tables."""
import pytest
import timm
import torch

import src.models as models

# Paper (arXiv 2103.14899) Tables 2 and 3: params (M) and FLOPs (G, i.e. GMACs) of the released models.
PAPER = {
    "fusionvit_tiny_240": (7.0, 1.6), "fusionvit_small_240": (26.7, 5.6), "fusionvit_base_240": (104.7, 21.2),
    "fusionvit_9_240": (8.6, 1.8), "fusionvit_15_240": (27.4, 5.8), "fusionvit_18_240": (43.3, 9.0),
    "fusionvit_9_dagger_240": (8.8, 2.0), "fusionvit_15_dagger_240": (28.2, 6.1),
    "fusionvit_18_dagger_240": (44.3, 9.5), "fusionvit_15_dagger_408": (28.5, 21.4),
    "fusionvit_18_dagger_408": (44.6, 32.4),
}


def timm_reference(name: str) -> str:
    """The timm model a paper variant mirrors: crossvit_ with the same suffix."""
    return name.replace("fusionvit_", "crossvit_", 1)


def test_every_paper_variant_is_registered():
    assert sorted(models.PAPER_VARIANTS) == sorted(PAPER)
    assert set(PAPER) <= set(timm.list_models("fusionvit_*"))


@pytest.fixture(scope="module", params=sorted(PAPER))
def pair(request):
    torch.manual_seed(0)
    reference = timm.create_model(timm_reference(request.param)).eval()
    ours = timm.create_model(request.param, fusion="cross").eval()
    return request.param, reference, ours


def test_parameter_count_equals_timm_and_the_paper(pair):
    variant, reference, ours = pair
    assert models.count_params(ours) == models.count_params(reference)
    assert models.count_params(ours) / 1e6 == pytest.approx(PAPER[variant][0], rel=0.01)


def test_logits_equal_timm_with_converted_weights(pair):
    variant, reference, ours = pair
    ours.load_state_dict(models.convert_crossvit_state_dict(reference.state_dict()), strict=True)
    images = torch.randn(2, 3, ours.img_size, ours.img_size)
    with torch.no_grad():
        difference = (ours(images) - reference(images)).abs().max().item()
    assert difference < 1e-4


def test_gmacs_match_the_paper(pair):
    variant, _, ours = pair
    assert models.count_flops(ours, (3, ours.img_size, ours.img_size)) == pytest.approx(PAPER[variant][1], abs=0.05)


def test_official_release_checkpoint_file_loads(tmp_path):
    reference = timm.create_model("crossvit_9_dagger_240").eval()
    # the official release stores ParameterLists (`cls_token.0`) and wraps the weights in {"model": ...}
    official = {k.replace("cls_token_", "cls_token.").replace("pos_embed_", "pos_embed."): v
                for k, v in reference.state_dict().items()}
    assert "cls_token.0" in official and "blocks.0.fusion.0.attn.wq.weight" in official
    torch.save({"model": official, "epoch": 299}, tmp_path / "crossvit_9_dagger_224.pth")
    ours = timm.create_model("fusionvit_9_dagger_240").eval()
    ours.load_state_dict(models.convert_crossvit_state_dict(tmp_path / "crossvit_9_dagger_224.pth"), strict=True)
    images = torch.randn(1, 3, 240, 240)
    with torch.no_grad():
        torch.testing.assert_close(ours(images), reference(images), rtol=0, atol=1e-4)


def test_defaults_equal_crossvit():
    ours, reference = models.FusionViT(), timm.models.crossvit.CrossVit()
    assert models.count_params(ours) == models.count_params(reference)


def test_pretrained_cfg_names_the_same_modules_as_timms(pair):
    name, _, ours = pair
    cfg, reference = timm.models.get_pretrained_cfg(name), timm.models.get_pretrained_cfg(timm_reference(name))
    assert (cfg.first_conv, cfg.classifier, cfg.input_size, cfg.crop_pct) == (
        reference.first_conv, reference.classifier, reference.input_size, reference.crop_pct)
    modules = dict(ours.named_modules())
    assert all(isinstance(modules[conv], torch.nn.Conv2d) for conv in cfg.first_conv)
