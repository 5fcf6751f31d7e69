"""Common random numbers: under the same seed two configurations start every part they share from the same
weights (src/models/init.py) and see the same batches and augmentation draws (the model is built in a fork of
the global generator), so that a seed-paired difference measures the change, not init noise."""
import pytest
import timm
import torch

import src.models as models
from src.train.loop import build_run

from conftest import compose_config

PROXY_MODEL = "fusionvit_micro_p8_32"
OTHER_FUSIONS = [name for name in models.fusion_names() if name != "none"]


def built(fusion: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(PROXY_MODEL, fusion=fusion, num_classes=10, **kwargs)


def differing(first: dict, second: dict, keys) -> list:
    return [key for key in keys if not torch.equal(first[key], second[key])]


@pytest.mark.parametrize("fusion", OTHER_FUSIONS)
def test_every_fusion_starts_what_it_shares_with_none_from_the_same_weights(fusion):
    plain, fused = built("none").state_dict(), built(fusion).state_dict()
    assert set(plain) <= set(fused) and len(plain) == 96  # branches, conv stems, tokens, norms, heads
    assert differing(plain, fused, plain) == []


def test_the_number_of_fusion_layers_moves_no_branch_weight():
    one, three = built("cross").state_dict(), built("cross", fusion_layers=3).state_dict()
    assert differing(one, three, [key for key in one if ".fusion." not in key]) == []


def test_the_seed_still_sets_every_weight():
    again, other = built("cross").state_dict(), built("cross", seed=1).state_dict()
    first = built("cross").state_dict()
    assert differing(first, again, first) == []
    learned = [key for key in first if not key.endswith(("bias", "norm.weight", "norm1.weight", "norm2.weight"))
               and first[key].std() > 0]
    assert len(learned) > 40 and differing(first, other, learned) == learned


def test_the_init_keeps_timms_distributions():
    model = built("cross")
    linear = model.encoders[0].branches[0][0].attn.qkv
    assert linear.weight.std().item() == pytest.approx(0.02, rel=0.05) and linear.weight.abs().max() <= 2.0
    assert not linear.bias.any() and torch.equal(model.norm[0].weight, torch.ones(48))
    conv = model.patch_embed[0].proj[0]  # the conv stem's first: PyTorch's default, uniform within 1 / sqrt(fan_in)
    bound = 1 / conv.weight[0].numel() ** 0.5
    assert conv.weight.abs().max() <= bound and conv.weight.std() > bound / 3
    assert model.pos_embed[1].std().item() == pytest.approx(0.02, rel=0.3)


def first_steps(fusion: str, data: str, steps: int = 3):
    """The first ``steps`` training steps of the harness's own run: (batches, initial logits, losses)."""
    cfg = compose_config([f"data={data}", f"model={PROXY_MODEL}", f"fusion={fusion}", "data.limit_train=192",
                          "train.batch_size=32", "train.threads=1", "logger=none",
                          "data.image_size=32"])
    run = build_run(cfg)
    images_seen, losses, initial = [], [], None
    for step, (images, targets) in enumerate(run.batches.epoch(0)):
        if step == steps:
            break
        logits = run.train_model(images)
        initial = logits.detach().clone() if initial is None else initial
        loss = run.criterion(logits, targets)
        run.optimizer.zero_grad()
        loss.backward()
        run.optimizer.step()
        run.scheduler.step_update(num_updates=step + 1)
        images_seen.append(images)
        losses.append(loss.item())
    return images_seen, initial, losses


@pytest.mark.parametrize("data", ["digits", "multiscale_digits"])
def test_none_and_a_closed_gate_see_the_same_batches_and_train_alike(data):
    """``gated_cross`` starts as ``none``: the same logits to the bit at init and the same losses for the first
    steps, apart from what the gate has opened by then (Adam moves it by about the warm-up lr, ~1e-4 a step
    here); the digits' random crops are the same draws."""
    plain_batches, plain_logits, plain_losses = first_steps("none", data)
    gated_batches, gated_logits, gated_losses = first_steps("gated_cross", data)
    assert all(torch.equal(a, b) for a, b in zip(plain_batches, gated_batches))
    torch.testing.assert_close(gated_logits, plain_logits, rtol=0, atol=0)
    assert gated_losses[0] == plain_losses[0]
    assert gated_losses == pytest.approx(plain_losses, rel=1e-4)


def test_cross_sees_nones_batches_though_it_builds_more_modules():
    plain_batches, _, _ = first_steps("none", "digits", steps=2)
    cross_batches, _, _ = first_steps("cross", "digits", steps=2)
    assert all(torch.equal(a, b) for a, b in zip(plain_batches, cross_batches))
