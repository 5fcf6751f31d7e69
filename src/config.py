"""The config schema: one dataclass per group under ``conf/``, registered with Hydra's ConfigStore.

``conf/config.yaml`` lists ``schema`` first in its defaults, so every yaml file and every command-line
override is checked against these fields: a misspelled key is an error, not a silently unused setting.
The defaults here are the only place a default is stated: an option file under ``conf/`` holds only what
differs from them. The ``model`` options are not files: ``register_configs`` makes one per
``src.models.VARIANTS`` entry (read from ``src.variant_table``, which imports neither torch nor timm).
"""
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from src.variant_table import VARIANTS  # plain data: composing a config never imports torch


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
    drop_path_rate: float = 0.1
    # Start from CrossViT weights: PATH of a timm or official checkpoint, or "hub" for timm's crossvit_* weights of
    # the same variant (network); a new head, resampled position embeddings, a non-cross fusion started fresh.
    # "required": a fine-tune preset's placeholder, an error until a PATH is given.
    pretrained: Optional[str] = None


@dataclass
class FusionConfig:
    """``conf/fusion/NAME.yaml``: a strategy of ``src.models.fusion_names()``; ``layers`` is CrossViT's L
    (only strategies that stack layers take it); ``options`` go to the strategy's constructor."""
    name: str = MISSING
    layers: Optional[int] = None
    options: Dict[str, Any] = field(default_factory=dict)


@dataclass
class RenderConfig:
    """``data.render`` of ``data=multiscale_digits``: each digit drawn with its side a log-uniform share of the
    canvas side, anywhere fully inside it, over ``clutter`` fragments of other digits; training renders drawn
    afresh every epoch."""
    min_scale: float = 0.3  # smallest digit side / canvas side (10 px of 32: 0.375 saturates the CPU proxy at 96%,
    # 0.25 has not finished learning in its 12 epochs, docs/training.md); min_scale x canvas must be >= 4 px
    max_scale: float = 1.0  # largest, <= 1 (the whole canvas)
    clutter: int = 0  # fragments (random crops of other digits' renders) pasted at random places; 0: none
    renders_per_digit: int = 6  # training renders of each training digit an epoch: 8,622
    val_renders_per_digit: int = 28  # fixed validation renders of each held-out digit: 28 x 360 = 10,080


@dataclass
class DataConfig:
    """``conf/data/NAME.yaml``: what the images are and the augmentation suited to them; the training recipe
    (epochs, batch, lr, warm-up) is ``conf/recipe``'s."""
    name: str = MISSING
    root: Optional[str] = None  # folder of the dataset (cifar, imagenet, imagefolder)
    download: bool = False  # torchvision download, where the network allows
    num_classes: int = MISSING
    image_size: Optional[int] = None  # null: the model's img_size
    val_fraction: float = 0.2  # digits, multiscale_digits: held-out share, split once with split_seed
    split_seed: int = 0
    num_train: int = 1024  # synthetic only
    num_val: int = 256  # synthetic only
    # multiscale_digits only (null elsewhere, so that other runs' config identity is unchanged)
    render: Optional[RenderConfig] = None
    limit_train: Optional[int] = None  # first N training samples (smoke runs)
    limit_val: Optional[int] = None
    # loader processes; null: auto, the CPUs this rank has (one kept) on CUDA, 0 on the CPU (src/data/__init__.py)
    num_workers: Optional[int] = 0
    # The DeiT recipe, from timm's create_transform / Mixup.
    auto_augment: Optional[str] = "rand-m9-mstd0.5-inc1"
    reprob: float = 0.25
    # random erasing's fill (timm's re_mode): null is timm's default, const; DeiT and CrossViT erase with pixel
    # (random values), as data=imagenet sets. Null here, so that other runs' config identity is unchanged.
    remode: Optional[str] = None
    hflip: float = 0.5
    color_jitter: float = 0.4
    scale: List[float] = field(default_factory=lambda: [0.08, 1.0])
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    mixup: float = 0.8
    cutmix: float = 1.0
    smoothing: float = 0.1
    repeated_aug: bool = False


@dataclass
class OptimConfig:
    name: str = "adamw"
    base_lr: float = 5e-4  # lr = base_lr * batch_size / lr_base_size (DeiT's linear scaling)
    lr_base_size: int = 512
    lr: Optional[float] = None  # an absolute lr, bypassing the scaling
    weight_decay: float = 0.05
    clip_grad: Optional[float] = None


@dataclass
class SchedConfig:
    name: str = "cosine"
    warmup_epochs: int = 5
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5
    cooldown_epochs: int = 0
    step_on_epochs: bool = False  # False: the lr changes every step, which short runs need


@dataclass
class LoggerConfig:
    name: str = "wandb"  # wandb | tensorboard | none (metrics.csv in the run dir is written with any of them)
    mode: str = "auto"  # auto | online | offline | disabled (W&B only)
    project: str = "fusionvit"
    entity: Optional[str] = None
    tags: List[str] = field(default_factory=list)
    job_type: Optional[str] = None  # W&B job type and tag: the ablation preset (null: the +experiment choice)
    init_timeout: float = 30.0
    log_every_n_steps: int = 10


@dataclass
class TrainConfig:
    epochs: int = 300
    batch_size: int = 128
    eval_batch_size: Optional[int] = None  # null: 2 x batch_size
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda | cuda:N
    amp: str = "auto"  # auto (bf16 on CUDA when supported, else fp16; none on CPU) | none | bf16 | fp16
    compile: bool = False
    ema: bool = False
    ema_decay: float = 0.9998
    threads: Optional[int] = None  # torch CPU threads; null: torch's default
    progress: str = "auto"  # auto (a bar on a terminal) | bar | log
    resume: str = "auto"  # auto (last.pt in the run dir, if any) | never | PATH of a checkpoint
    force: bool = False  # re-run even when the run dir's results.json says completed for this config
    on_busy: str = "skip"  # another live process holds the run dir's lock: skip (it runs the job) | wait for it
    save_checkpoints: bool = True  # last.pt every epoch, best.pt on a better top-1
    ckpt_every_steps: int = 0  # also save last.pt every N optimizer steps inside an epoch (0: off)
    # micro-batches per optimizer step: batch_size (the global batch) is split over ranks x this; null: 1 (and the
    # config identity of runs from before it unchanged)
    grad_accum_steps: Optional[int] = None


@dataclass
class Config:
    model: ModelConfig = MISSING
    fusion: FusionConfig = MISSING
    data: DataConfig = MISSING
    optim: OptimConfig = MISSING
    sched: SchedConfig = MISSING
    logger: LoggerConfig = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0


SWEEP_STAMP_ENV = "FUSIONVIT_SWEEP_STAMP"


def sweep_stamp() -> str:
    """``${sweep_stamp:}`` in conf/config.yaml's sweep dir: now, to the microsecond (two sweeps started in the same
    second must not share a folder), or the stamp torchrun's rank 0 gave every rank (``src.run``), so that the ranks
    of one ``torchrun ... -m`` share one sweep dir."""
    return os.environ.get(SWEEP_STAMP_ENV) or datetime.now().strftime("%Y-%m-%d/%H-%M-%S-%f")


def register_configs() -> None:
    if not OmegaConf.has_resolver("sweep_stamp"):
        OmegaConf.register_new_resolver("sweep_stamp", sweep_stamp)
    store = ConfigStore.instance()
    store.store(name="schema", node=Config)
    for name, architecture in VARIANTS.items():
        store.store(group="model", name=name, node=model_config(name, architecture))


def model_config(name: str, architecture: Dict[str, Any]) -> ModelConfig:
    """A ``VARIANTS`` entry as the ``model`` node (tuples become lists, as in any yaml file)."""
    def as_list(value):
        return [as_list(item) for item in value] if isinstance(value, (tuple, list)) else value

    return ModelConfig(name=name, **{key: as_list(value) for key, value in architecture.items()})
