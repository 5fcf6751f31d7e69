"""The selection split (``data.selection``): a fixed part of the training data held out to choose on (a recipe, a
trial, an epoch), so that the validation split, the test set every table reports, is never chosen on. It is drawn
once from ``data.split_seed`` (the same images for every run and seed), evaluated with the eval transform, and
never trained on. 0 (the default) holds out nothing: every run before the key trained on all of it."""
import copy
from typing import Optional, Tuple

import numpy as np
from torch.utils.data import Dataset, Subset

SELECTION_STREAM = 2  # the first word of the split's generator seed: apart from multiscale_digits' 0 and 1


def selection_count(selection: float, available: int, unit: str = "image") -> int:
    """How many of ``available`` training units ``data.selection`` holds out: a fraction in (0, 1) of them, or a
    whole count >= 1; 0 holds out none. Checked before any work, naming the key and the fix."""
    if not selection:
        return 0
    shown = f"{selection:g}"  # 5000, not the 5000.0 the float key holds
    if selection < 0 or (selection >= 1 and selection != int(selection)):
        raise ValueError(f"data.selection={shown}: a fraction of the training {unit}s in (0, 1), e.g. "
                         f"data.selection=0.2, a whole count of them, or 0 (no selection split)")
    count = round(selection * available) if selection < 1 else int(selection)
    if count < 1:
        raise ValueError(f"data.selection={shown} of the {available} training {unit}s holds out none: raise it, "
                         f"e.g. data.selection=0.2")
    if count >= available:
        raise ValueError(f"data.selection={shown} holds out {count} of the {available} training {unit}s and leaves "
                         f"none to train on: use a fraction such as data.selection=0.2, or a count below {available}")
    return count


def split_indices(available: int, selection: float, split_seed: int,
                  unit: str = "image") -> Tuple[np.ndarray, np.ndarray]:
    """(training indices, selection indices), each sorted; the same for every run of ``split_seed``."""
    count = selection_count(selection, available, unit)
    order = np.random.default_rng((SELECTION_STREAM, split_seed)).permutation(available)
    return np.sort(order[count:]), np.sort(order[:count])


def hold_out(train: Dataset, train_for_eval: Optional[Dataset], selection: float,
             split_seed: int) -> Tuple[Dataset, Optional[Dataset]]:
    """(what is left to train on, the selection set): ``train_for_eval`` is the same images as ``train`` through
    the eval transform (None: ``train`` itself, which has no augmentation). ``selection`` 0: ``train`` as it is
    and None."""
    if not selection:
        return train, None
    kept, held = split_indices(len(train), selection, split_seed)
    return Subset(train, kept.tolist()), Subset(train if train_for_eval is None else train_for_eval, held.tolist())


def with_transform(dataset: Dataset, transform) -> Dataset:
    """The same images through ``transform`` (a shallow copy: the images are shared, not loaded twice)."""
    if not hasattr(dataset, "transform"):
        raise ValueError(f"{type(dataset).__name__} has no transform to swap for the eval one: data.selection cannot "
                         f"hold out part of it; set data.selection=0")
    view = copy.copy(dataset)
    view.transform = transform
    return view
