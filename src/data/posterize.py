"""timm's RandAugment posterize under Pillow 13. With the DeiT recipe's ``rand-m9-mstd0.5-inc1``, PosterizeIncreasing
asks for ``posterize(image, 0)`` when the magnitude draw reaches 10 (about one image in 700). Pillow up to 12 gives a
black image there (its mask keeps no bit), and that is what DeiT and CrossViT trained with. Pillow 13 raises
ValueError, which stops an ImageNet, CIFAR or image-folder run in its first batches. The train transforms therefore
get timm's op with that one case done as Pillow 12 did it; every other bit count is timm's own call."""
from PIL import Image
from timm.data.auto_augment import posterize


def posterize_zero_bits_black(img: Image.Image, bits_to_keep: int, **kwargs) -> Image.Image:
    if bits_to_keep <= 0:
        return img.point([0] * 256 * len(img.getbands()))  # Pillow 12's lookup table for 0 bits: all zero
    return posterize(img, bits_to_keep, **kwargs)


def fix_posterize(transform) -> int:
    """Gives the posterize ops of the RandAugment steps of ``transform`` (a Compose) the function above, in place;
    returns how many it changed."""
    changed = 0
    for step in getattr(transform, "transforms", []):
        for op in getattr(step, "ops", []):
            if op.aug_fn is posterize:
                op.aug_fn = posterize_zero_bits_black
                changed += 1
    return changed
