"""The config schema: one dataclass per group under ``conf/``, registered with Hydra's ConfigStore.

``conf/config.yaml`` lists ``schema`` first in its defaults, so every yaml file and every command-line
override is checked against these fields: a misspelled key is an error, not a silently unused setting.
The defaults here are the only place a default is stated: an option file under ``conf/`` holds only what
differs from them. Each rule of a key is stated here too, once (``setting``): the value it must take
(``src.rules``, checked by ``src.preflight``), whether it only says how to run (``run_only``: it never changes a
run's identity, ``src.identity``) and what runs recorded before the key existed trained with (``absent_means``).
The ``model`` options are not files: ``register_configs`` makes one per ``src.models.VARIANTS`` entry (read
from ``src.variant_table``, which imports neither torch nor timm).
"""
import copy
import dataclasses
import os
import typing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, Iterator, List, Optional, Tuple

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from src.rules import Rule, at_least, between, inside, one_of, positive
from src.variant_table import VARIANTS  # plain data: composing a config never imports torch

NOT_RECORDED = object()


def setting(default: Any, rule: Optional[Rule] = None, *, run_only: bool = False,
            absent_means: Any = NOT_RECORDED) -> Any:
    """A schema field with its rules: ``rule`` (the value it must take), ``run_only`` (how to run, not what is
    trained: left out of the run's identity) and ``absent_means`` (the value older records, written before the key
    existed, trained with: a record without the key, or with null, is the same run as one with this value)."""
    metadata = {"rule": rule, "run_only": run_only, "absent_means": absent_means}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


AMP_CHOICES = ("auto", "none", "bf16", "fp16")
PROGRESS_CHOICES = ("auto", "bar", "log")
LOGGER_CHOICES = ("wandb", "tensorboard", "none")
LOGGER_MODES = ("auto", "online", "offline", "disabled")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "box", "hamming", "lanczos", "random")


@dataclass
class ModelConfig:
    """``model=NAME``, one option per ``src.models.VARIANTS`` entry (its timm name): the variant's architecture
    written out, so that ``--cfg job`` shows it and a sweep (``model.embed_dim=...``) overrides a visible
    number; null keeps the variant's default."""
    name: str = MISSING
    img_size: Optional[int] = None
    img_scale: Optional[List[float]] = None
    patch_size: Optional[List[int]] = None
    embed_dim: Optional[List[int]] = None
    depth: Optional[List[Any]] = None  # [[N, M, L], ...] per multi-scale encoder
    num_heads: Optional[List[int]] = None
    mlp_ratio: Optional[List[float]] = None
    multi_conv: Optional[bool] = None
    class_token: Optional[bool] = None  # false: the paper's model without CLS tokens (mean patch token instead)
    drop_path_rate: float = setting(0.1, between(0, 1, "must be in [0, 1), e.g. model.drop_path_rate=0.1"))
    # Start from CrossViT weights: PATH of a timm or official checkpoint, or "hub" for timm's crossvit_* weights of
    # the same variant (network); a new head, resampled position embeddings, a non-cross fusion started fresh.
    # "required": a fine-tune preset's placeholder, an error until a PATH is given.
    pretrained: Optional[str] = None


@dataclass
class FusionConfig:
    """``conf/fusion/NAME.yaml``: a strategy of ``src.models.fusion_names()``; ``layers`` is CrossViT's L
    (only strategies that stack layers take it); ``options`` go to the strategy's constructor."""
    name: str = MISSING
    layers: Optional[int] = setting(None, at_least(1, "").or_null(
        "must be >= 1 fusion layers, or null (the strategy's default)"))
    options: Dict[str, Any] = field(default_factory=dict)


@dataclass
class RenderConfig:
    """``data.render`` of ``data=multiscale_digits``: each digit drawn with its side a log-uniform share of the
    canvas side, anywhere fully inside it, over ``clutter`` fragments of other digits; training renders drawn
    afresh every epoch."""
    # smallest digit side / canvas side; min_scale x canvas must be >= 4 px. 0.3 (10 px of 32): hard enough not to
    # saturate the proxy, easy enough to finish learning in its 12 epochs (docs/training.md#the-cpu-proxy-...)
    min_scale: float = 0.3
    max_scale: float = 1.0  # largest, <= 1 (the whole canvas)
    clutter: int = 0  # fragments (random crops of other digits' renders) pasted at random places; 0: none
    renders_per_digit: int = 6  # training renders of each training digit an epoch: 8,622
    val_renders_per_digit: int = 28  # fixed validation renders of each held-out digit: 28 x 360 = 10,080


@dataclass
class DataConfig:
    """``conf/data/NAME.yaml``: what the images are and the augmentation suited to them; the training recipe
    (epochs, batch, lr, warm-up) is ``conf/recipe``'s."""
    name: str = MISSING
    root: Optional[str] = None  # folder of the dataset (cifar, imagenet, imagefolder, shards); ~ is expanded
    download: bool = False  # torchvision download, where the network allows
    # null: the data's own count (src.data.resolve_num_classes); a given count must equal it (one class cannot be
    # classified)
    num_classes: Optional[int] = setting(None, at_least(2, "").or_null(
        "must be >= 2 classes, or null (the data's own count)"))
    # data=shards only: the tar files of each split under data.root, a glob and/or brace range
    # (train-{000000..000009}.tar); src/data/shards.py
    train_shards: Optional[str] = None
    val_shards: Optional[str] = None
    image_size: Optional[int] = setting(None, at_least(1, "").or_null(  # null: the model's img_size
        "must be >= 1 pixels, or null (the model's img_size)"))
    # digits, multiscale_digits: held-out share, split once with split_seed
    val_fraction: float = setting(0.2, inside(0, 1, "must be in (0, 1), e.g. data.val_fraction=0.2"))
    split_seed: int = 0
    # the selection split: this share (0 to 1) or count (>= 1) of the training data held out, fixed by split_seed,
    # evaluated each epoch as selection_top1 and never trained on, so that choices (recipes, trials, epochs) are
    # made on it and the validation split stays a test set; 0: none (src/data/selection.py)
    selection: float = setting(0.0, at_least(0, "must be 0 (none), a fraction in (0, 1) or a count >= 1 of the "
                                                "training images, e.g. data.selection=0.2"), absent_means=0.0)
    num_train: int = setting(1024, at_least(1, "must be >= 1 images"))  # synthetic only
    num_val: int = setting(256, at_least(1, "must be >= 1 images"))  # synthetic only
    # multiscale_digits only (null elsewhere, so that other runs' config identity is unchanged)
    render: Optional[RenderConfig] = None
    # first N samples (smoke runs)
    limit_train: Optional[int] = setting(None, at_least(1, "").or_null("must be >= 1 samples, or null (all of them)"))
    limit_val: Optional[int] = setting(None, at_least(1, "").or_null("must be >= 1 samples, or null (all of them)"))
    # loader processes; null: auto, the CPUs this rank has (one kept) on CUDA, 0 on the CPU (src/data/__init__.py)
    num_workers: Optional[int] = setting(0, at_least(0, "").or_null(
        "use 0 (load in the training process), a count of worker processes, or null (auto: the CPUs this rank has "
        "on CUDA, 0 on the CPU)"))
    # The DeiT recipe, from timm's create_transform / Mixup.
    auto_augment: Optional[str] = "rand-m9-mstd0.5-inc1"
    reprob: float = setting(0.25, between(0, 1, "must be a probability in [0, 1] (0: no random erasing)",
                                          closed_high=True))
    # random erasing's fill (timm's re_mode); DeiT and CrossViT erase with pixel (random values), as data=imagenet sets
    remode: str = setting("const", one_of(("const", "rand", "pixel"), "pick const, rand or pixel"),
                          absent_means="const")
    hflip: float = setting(0.5, between(0, 1, "must be a probability in [0, 1]", closed_high=True))
    color_jitter: float = setting(0.4, at_least(0, "must be >= 0 (0: off)"))
    scale: List[float] = setting([0.08, 1.0], Rule(
        lambda value: len(value) == 2 and 0 < value[0] <= value[1] <= 1,
        "must be [low, high] with 0 < low <= high <= 1, e.g. data.scale=[0.08,1.0]"))
    interpolation: str = setting("bicubic", one_of(INTERPOLATIONS, f"pick {', '.join(INTERPOLATIONS[:-1])} or "
                                                                   f"{INTERPOLATIONS[-1]}"))
    crop_pct: float = setting(0.875, between(0, 1, "must be in (0, 1], e.g. data.crop_pct=0.875", closed_high=True))
    mixup: float = setting(0.8, at_least(0, "must be >= 0 (mixup's alpha; 0: off)"))
    cutmix: float = setting(1.0, at_least(0, "must be >= 0 (cutmix's alpha; 0: off)"))
    smoothing: float = setting(0.1, between(0, 1, "must be in [0, 1) (label smoothing; 0: off)"))
    repeated_aug: bool = False


@dataclass
class OptimConfig:
    name: str = "adamw"
    # lr = base_lr * batch_size / lr_base_size (DeiT's linear scaling)
    base_lr: float = setting(5e-4, positive("must be a finite number > 0, e.g. optim.base_lr=5e-4"))
    lr_base_size: int = setting(512, at_least(1, "must be >= 1, e.g. optim.lr_base_size=512"))
    lr: Optional[float] = setting(None, positive("").or_null(  # an absolute lr, bypassing the scaling
        "must be a finite number > 0, e.g. optim.lr=1e-3, or null (optim.base_lr x train.batch_size / "
        "optim.lr_base_size)"))
    weight_decay: float = setting(0.05, at_least(0, "must be a finite number >= 0, e.g. optim.weight_decay=0.05"))
    clip_grad: Optional[float] = setting(None, positive("").or_null("must be a finite norm > 0, or null (no clipping)"))


@dataclass
class SchedConfig:
    name: str = "cosine"
    warmup_epochs: int = setting(5, at_least(0, "must be >= 0 (0: no warm-up)"))
    warmup_lr: float = setting(1e-6, at_least(0, "must be a finite number >= 0, e.g. sched.warmup_lr=1e-6"))
    min_lr: float = setting(1e-5, at_least(0, "must be a finite number >= 0, e.g. sched.min_lr=1e-5"))
    cooldown_epochs: int = setting(0, at_least(0, "must be >= 0 (0: no cooldown)"))
    step_on_epochs: bool = False  # False: the lr changes every step, which short runs need


@dataclass
class LoggerConfig:
    # metrics.csv in the run dir is written with any of them
    name: str = setting("wandb", one_of(LOGGER_CHOICES, "pick wandb, tensorboard or none"))
    mode: str = setting("auto", one_of(LOGGER_MODES, "pick auto, online, offline or disabled"))  # W&B only
    project: str = "fusionvit"
    entity: Optional[str] = None
    tags: List[str] = field(default_factory=list)
    job_type: Optional[str] = None  # W&B job type and tag: the ablation preset (null: the +experiment choice)
    init_timeout: float = setting(30.0, positive("must be > 0 seconds, e.g. logger.init_timeout=30"))
    log_every_n_steps: int = setting(10, at_least(1, "must be >= 1 steps, e.g. logger.log_every_n_steps=10"))


@dataclass
class TrainConfig:
    epochs: int = setting(300, at_least(1, "must be >= 1, e.g. train.epochs=10"))
    batch_size: int = setting(128, at_least(1, "must be >= 1, e.g. train.batch_size=64"))
    eval_batch_size: Optional[int] = setting(None, at_least(1, "").or_null(  # null: 2 x batch_size
        "must be >= 1, or null (2 x train.batch_size)"))
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda | cuda:N: src.train.build.resolve_device checks it
    # auto: bf16 on CUDA when supported, else fp16; none on CPU (src.train.build.check_amp)
    amp: str = setting("auto", one_of(AMP_CHOICES, "pick auto, none, bf16 or fp16"))
    compile: bool = False
    ema: bool = False
    ema_decay: float = setting(0.9998, between(0, 1, "must be in [0, 1), e.g. train.ema_decay=0.9998"))
    threads: Optional[int] = setting(None, at_least(1, "").or_null(  # torch CPU threads; null: torch's default
        "must be >= 1 torch threads, or null (torch's default)"), run_only=True)
    progress: str = setting("auto", one_of(PROGRESS_CHOICES, "pick auto (a bar on a terminal), bar or log"),
                            run_only=True)
    # auto (last.pt in the run dir, if any) | never | PATH of a checkpoint
    resume: str = setting("auto", run_only=True)
    # re-run even when the run dir's results.json says completed for this config
    force: bool = setting(False, run_only=True)
    # another live process holds the run dir's lock: skip (it runs the job) | wait for it
    on_busy: str = setting("skip", one_of(("skip", "wait"), "pick skip (the other process runs the job) or wait"),
                           run_only=True)
    save_checkpoints: bool = setting(True, run_only=True)  # last.pt every epoch, best.pt on a better top-1
    # also save last.pt every N optimizer steps inside an epoch (0: off)
    ckpt_every_steps: int = setting(0, at_least(0, "must be >= 0: a number of optimizer steps, or 0 (off)"),
                                    run_only=True)
    # micro-batches per optimizer step: batch_size (the global batch) is split over ranks x this
    grad_accum_steps: int = setting(1, at_least(1, "must be >= 1 micro-batches per step"), absent_means=1)
    # deterministic kernels (torch.use_deterministic_algorithms; on CUDA also math attention and a fixed cuBLAS
    # workspace): the same numbers run after run on a GPU, slower. It picks the kernels, so it is the run's identity;
    # every run before the key trained without it (src/train/determinism.py, docs/robustness.md#resume)
    deterministic: bool = setting(False, absent_means=False)


@dataclass
class Config:
    model: ModelConfig = MISSING
    fusion: FusionConfig = MISSING
    data: DataConfig = MISSING
    optim: OptimConfig = MISSING
    sched: SchedConfig = MISSING
    logger: LoggerConfig = setting(MISSING, run_only=True)  # a mirror of the run dir: never changes a number
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = setting(0, between(0, 2**32, "pick an integer from 0 to 2**32 - 1 (numpy's seed range), e.g. seed=0"))


SWEEP_STAMP_ENV = "FUSIONVIT_SWEEP_STAMP"


def sweep_stamp() -> str:
    """``${sweep_stamp:}`` in conf/config.yaml's sweep dir: now, to the microsecond (two sweeps started in the same
    second must not share a folder), or the stamp torchrun's rank 0 gave every rank (``src.run``), so that the ranks
    of one ``torchrun ... -m`` share one sweep dir."""
    return os.environ.get(SWEEP_STAMP_ENV) or datetime.now().strftime("%Y-%m-%d/%H-%M-%S-%f")


def register_configs() -> None:
    if not OmegaConf.has_resolver("sweep_stamp"):
        OmegaConf.register_new_resolver("sweep_stamp", sweep_stamp)
    if not OmegaConf.has_resolver("fusionvit_help"):
        from src.help import fusionvit_help

        OmegaConf.register_new_resolver("fusionvit_help", fusionvit_help)
    store = ConfigStore.instance()
    store.store(name="schema", node=Config)
    for name, architecture in VARIANTS.items():
        store.store(group="model", name=name, node=model_config(name, architecture))


def model_config(name: str, architecture: Dict[str, Any]) -> ModelConfig:
    """A ``VARIANTS`` entry as the ``model`` node (tuples become lists, as in any yaml file)."""
    def as_list(value):
        return [as_list(item) for item in value] if isinstance(value, (tuple, list)) else value

    return ModelConfig(name=name, **{key: as_list(value) for key, value in architecture.items()})


def schema_fields(cls=Config, prefix: str = "") -> Iterator[Tuple[str, dataclasses.Field, Any, bool]]:
    """(dotted key, field, type, optional) for every field of the schema, nested dataclasses walked."""
    for item in dataclasses.fields(cls):
        kind, optional = unwrap_optional(item.type)
        yield prefix + item.name, item, kind, optional
        if dataclasses.is_dataclass(kind):
            yield from schema_fields(kind, f"{prefix}{item.name}.")


def unwrap_optional(kind) -> Tuple[Any, bool]:
    if typing.get_origin(kind) is typing.Union:
        rest = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return rest[0], len(rest) < len(typing.get_args(kind))
    return kind, False


FIELDS = {key: item for key, item, _, _ in schema_fields()}
