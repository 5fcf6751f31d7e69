"""Writes tests/data/crossvit_released_3branch.pt: a tiny 3-branch model of the released CrossViT code, its weights
and its logits, the outside reference of test_model_nbranch.py. Not run by the tests (they cannot fetch code).

    python tests/data/make_crossvit_released_3branch.py DIR [OUT]

DIR holds ``crossvit_released.py``: IBM/CrossViT's ``models/crossvit.py`` (commit 3f7ab77) with one change for timm
1.0.31, ``Block(..., drop=drop, ...)`` -> ``proj_drop=drop`` in ``MultiScaleBlock``. The weights are the released
init, every parameter moved by 0.02 N(0, 1) noise (LayerNorms and biases start at 1 and 0, which would hide a
mapping error), rounded to fp16 (stored so, < 300 KB); the logits are computed from the rounded weights in fp32."""
import sys
from functools import partial

import torch
import torch.nn as nn

# three widths all different (every f/g projects), heads differing per branch, an L=0 encoder (one CA block) and an
# L=2 one (a Sequential of two); the last branch the deepest, which the released drop-path schedule needs
ARCH = dict(img_size=[32, 32, 32], patch_size=[4, 8, 16], embed_dim=[16, 32, 24],
            depth=[[1, 1, 1, 0], [1, 1, 2, 2]], num_heads=[2, 4, 3], mlp_ratio=[2, 3, 1, 1], num_classes=10)
IMAGES_SEED = 1


def main(released_dir: str, out: str) -> None:
    sys.path.insert(0, released_dir)
    from crossvit_released import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(**ARCH, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p)).copy_(p.half().float())
        images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(IMAGES_SEED))
        logits = model(images)
    state = {k: v.half() for k, v in model.state_dict().items()}
    torch.save({"arch": ARCH, "state_dict": state, "images_seed": IMAGES_SEED, "logits": logits}, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "tests/data/crossvit_released_3branch.pt")
