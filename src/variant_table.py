"""The model variants as plain data, importable without torch or timm: ``src.config`` builds the ``model=``
options from this table before any run needs the models (so ``--help`` and config errors answer fast), and
``src.models.variants`` registers each entry with timm."""
from typing import Dict

# Every entry states the whole architecture, so that the generated `model=` option shows every value.
_240 = dict(img_size=240, img_scale=(1.0, 224 / 240), patch_size=(12, 16), multi_conv=False)
_408 = dict(img_size=408, img_scale=(1.0, 384 / 408), patch_size=(12, 16), multi_conv=True)
_DAGGER = dict(_240, multi_conv=True)
_32 = dict(img_size=32, img_scale=(1.0, 1.0), patch_size=(4, 8), multi_conv=False)
_16 = dict(_32, img_size=16)
_32_THREE = dict(img_size=32, img_scale=(1.0, 1.0, 1.0), patch_size=(4, 8, 16), multi_conv=False)
_16_THREE = dict(_32_THREE, img_size=16)
# The CPU proxy's: the 3-conv (dagger) patch embedding, without which its seeds spread 1-2 points (docs/training.md)
_32_P8 = dict(_32, patch_size=(8, 16), multi_conv=True)
_32_P8_THREE = dict(_32_THREE, patch_size=(8, 16, 32), multi_conv=True)
# One branch: a plain ViT, built with fusion=none. One block per encoder, so that encoder k is timm's blocks.k:
# intermediates, layer-wise lr decay (one group per encoder) and checkpointing then go block by block, as in timm.
_DEIT = dict(img_size=224, img_scale=(1.0,), patch_size=(16,), multi_conv=False, depth=((1,),) * 12, mlp_ratio=(4,))

# The timm name -> its configuration; the paper's mirror timm's ``crossvit_*`` of the same suffix.
# Depth triples are CrossViT's (N, M, L); with n branches, the released code's [d_0, ..., d_{n-1}, L].
VARIANTS: Dict[str, dict] = {
    "fusionvit_tiny_240": dict(_240, embed_dim=(96, 192), depth=((1, 4, 0),) * 3, num_heads=(3, 3),
                               mlp_ratio=(4, 4, 1)),
    "fusionvit_small_240": dict(_240, embed_dim=(192, 384), depth=((1, 4, 0),) * 3, num_heads=(6, 6),
                                mlp_ratio=(4, 4, 1)),
    "fusionvit_base_240": dict(_240, embed_dim=(384, 768), depth=((1, 4, 0),) * 3, num_heads=(12, 12),
                               mlp_ratio=(4, 4, 1)),
    "fusionvit_9_240": dict(_240, embed_dim=(128, 256), depth=((1, 3, 0),) * 3, num_heads=(4, 4),
                            mlp_ratio=(3, 3, 1)),
    "fusionvit_15_240": dict(_240, embed_dim=(192, 384), depth=((1, 5, 0),) * 3, num_heads=(6, 6),
                             mlp_ratio=(3, 3, 1)),
    "fusionvit_18_240": dict(_240, embed_dim=(224, 448), depth=((1, 6, 0),) * 3, num_heads=(7, 7),
                             mlp_ratio=(3, 3, 1)),
    "fusionvit_9_dagger_240": dict(_DAGGER, embed_dim=(128, 256), depth=((1, 3, 0),) * 3, num_heads=(4, 4),
                                   mlp_ratio=(3, 3, 1)),
    "fusionvit_15_dagger_240": dict(_DAGGER, embed_dim=(192, 384), depth=((1, 5, 0),) * 3, num_heads=(6, 6),
                                    mlp_ratio=(3, 3, 1)),
    "fusionvit_18_dagger_240": dict(_DAGGER, embed_dim=(224, 448), depth=((1, 6, 0),) * 3, num_heads=(7, 7),
                                    mlp_ratio=(3, 3, 1)),
    "fusionvit_15_dagger_408": dict(_408, embed_dim=(192, 384), depth=((1, 5, 0),) * 3, num_heads=(6, 6),
                                    mlp_ratio=(3, 3, 1)),
    "fusionvit_18_dagger_408": dict(_408, embed_dim=(224, 448), depth=((1, 6, 0),) * 3, num_heads=(7, 7),
                                    mlp_ratio=(3, 3, 1)),
    # CPU-sized, for 32x32 inputs (digits, CIFAR); parameter counts (cross, 10 classes) are in the README.
    "fusionvit_micro_32": dict(_32, embed_dim=(48, 96), depth=((1, 2, 0),) * 2, num_heads=(3, 3),
                               mlp_ratio=(3, 3, 1)),
    "fusionvit_mini_32": dict(_32, embed_dim=(64, 128), depth=((1, 3, 0),) * 3, num_heads=(4, 4),
                              mlp_ratio=(3, 3, 1)),
    "fusionvit_small_32": dict(_32, embed_dim=(128, 256), depth=((1, 4, 0),) * 3, num_heads=(4, 4),
                               mlp_ratio=(3, 3, 1)),
    # micro at 16x16: 4x4 and 2x2 patch grids, a quarter of micro_32's tokens, for the 8x8 digits (recipe=digits_cpu,
    # `make run`): it trains every fusion to a flat, seed-stable top-1 where micro_32 did not (docs/training.md).
    "fusionvit_micro_16": dict(_16, embed_dim=(48, 96), depth=((1, 2, 0),) * 2, num_heads=(3, 3),
                               mlp_ratio=(3, 3, 1)),
    # micro_32 plus a third branch of 16-pixel patches (2x2 grid) at the L-branch's width, one block an encoder: the
    # 2 vs 3 branches ablation (conf/experiment/branches_ablation_cpu.yaml). mlp_ratio: one per branch + the fusion's.
    "fusionvit_micro3_32": dict(_32_THREE, embed_dim=(48, 96, 96), depth=((1, 2, 1, 0),) * 2, num_heads=(3, 3, 3),
                                mlp_ratio=(3, 3, 3, 1)),
    # micro_16 plus a third branch whose one 16-pixel patch is the whole image (the coarsest scale there is): the
    # 2 vs 3 branches ablation on the digits under recipe=digits_cpu (conf/experiment/branches_ablation_cpu.yaml).
    "fusionvit_micro3_16": dict(_16_THREE, embed_dim=(48, 96, 96), depth=((1, 2, 1, 0),) * 2, num_heads=(3, 3, 3),
                                mlp_ratio=(3, 3, 3, 1)),
    # micro at 32x32 with 8- and 16-pixel patches (4x4 and 2x2 grids, micro_16's token counts at twice the
    # resolution): the CPU proxy's model, for data=multiscale_digits (conf/experiment/cpu/proxy.yaml).
    "fusionvit_micro_p8_32": dict(_32_P8, embed_dim=(48, 96), depth=((1, 2, 0),) * 2, num_heads=(3, 3),
                                  mlp_ratio=(3, 3, 1)),
    # micro_p8_32 plus a third branch whose one 32-pixel patch is the whole canvas: the 2 vs 3 branches ablation
    # on the proxy (conf/experiment/branches_ablation_cpu.yaml).
    "fusionvit_micro3_p8_32": dict(_32_P8_THREE, embed_dim=(48, 96, 96), depth=((1, 2, 1, 0),) * 2,
                                   num_heads=(3, 3, 3), mlp_ratio=(3, 3, 3, 1)),
    # The paper's Table 2 baselines: timm's deit_{tiny,small,base}_patch16_224, the L-branches of CrossViT-Ti/S/B.
    "fusionvit_deit_tiny_224": dict(_DEIT, embed_dim=(192,), num_heads=(3,)),
    "fusionvit_deit_small_224": dict(_DEIT, embed_dim=(384,), num_heads=(6,)),
    "fusionvit_deit_base_224": dict(_DEIT, embed_dim=(768,), num_heads=(12,)),
}
# Apart from PAPER_VARIANTS, which mirror timm's crossvit_* (weights, tests against CrossVit): these mirror deit_*.
DEIT_VARIANTS = [name for name in VARIANTS if name.startswith("fusionvit_deit_")]
PAPER_VARIANTS = [name for name in VARIANTS if not name.endswith(("_16", "_32")) and name not in DEIT_VARIANTS]
