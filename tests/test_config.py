"""The config tree composes with Hydra's compose API: every group option, the experiments, and typo errors."""
from pathlib import Path

import pytest
import timm
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from src.config import model_option, register_configs
from src.models import VARIANTS, count_params, fusion_names
from src.train.build import build_model, learning_rate, model_kwargs

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ("model", "fusion", "data", "optim", "sched", "logger")
register_configs()


def compose_config(overrides=()):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def options(group: str):
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes(group, option):
    cfg = compose_config([f"{group}={option}"])
    assert OmegaConf.missing_keys(cfg) == set()
    OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes(experiment):
    OmegaConf.to_container(compose_config([f"+experiment={experiment}"]), resolve=True)


def test_groups_cover_every_variant_and_fusion():
    assert set(options("model")) == {model_option(v) for v in VARIANTS}
    assert all(not option[0].isdigit() for option in options("model"))  # Hydra would read 9_240 as 9240
    assert set(options("fusion")) == set(fusion_names())


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_model_yaml_states_the_variants_architecture(variant):
    cfg = compose_config([f"model={model_option(variant)}"])
    kwargs = model_kwargs(cfg)
    expected = VARIANTS[variant]
    for key in ("img_size", "patch_size", "embed_dim", "num_heads", "mlp_ratio"):
        assert list(kwargs[key]) == list(expected[key]) if key != "img_size" else kwargs[key] == expected[key]
    assert [tuple(d) for d in kwargs["depth"]] == [tuple(d) for d in expected["depth"]]
    assert list(kwargs["img_scale"]) == list(expected.get("img_scale", (1.0, 1.0)))
    assert kwargs["multi_conv"] == expected.get("multi_conv", False)


@pytest.mark.parametrize("fusion", sorted(fusion_names()))
def test_every_fusion_option_builds_the_model(fusion):
    model = build_model(compose_config([f"fusion={fusion}"]))
    assert model.fusion_name == fusion


def test_defaults_are_the_cpu_digits_run():
    cfg = compose_config()
    assert (cfg.model.name, cfg.fusion.name, cfg.data.name, cfg.logger.name) == (
        "fusionvit_micro_32", "cross", "digits", "wandb")


def test_sweep_axes_are_plain_overrides():
    cfg = compose_config(["model.patch_size=[2,8]", "model.embed_dim=[48,192]", "fusion.layers=2",
                          "model.depth=[[2,2,0],[2,2,0]]", "seed=3"])
    model = build_model(cfg)
    direct = timm.create_model("fusionvit_micro_32", fusion="cross", num_classes=10, patch_size=(2, 8),
                               embed_dim=(48, 192), depth=((2, 2, 0),) * 2, fusion_layers=2)
    assert model.embed_dim == (48, 192) and cfg.seed == 3
    assert model.patch_embed[0].patch_size == (2, 2)
    assert len(model.encoders[0].branches[0]) == 2  # N = 2 S-branch blocks
    assert count_params(model) == count_params(direct)


@pytest.mark.parametrize("override", ["model.patch_sizes=[4,8]", "train.epoch=3", "data.nme=digits",
                                      "fusion.layer=2", "seeds=1"])
def test_a_typo_in_a_key_is_an_error(override):
    with pytest.raises(ConfigCompositionException, match="not in|Could not override"):
        compose_config([override])


def test_an_unknown_group_option_lists_the_known_ones():
    with pytest.raises(MissingConfigException, match=r"(?s)Could not find 'fusion/crosss'.*all_attn"):
        compose_config(["fusion=crosss"])


def test_a_typo_inside_a_yaml_file_is_an_error(tmp_path):
    conf = tmp_path / "conf"
    for path in CONF.rglob("*.yaml"):
        target = conf / path.relative_to(CONF)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    (conf / "experiment" / "typo.yaml").write_text("# @package _global_\ntrain:\n  epoch: 3\n")
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        with pytest.raises(ConfigCompositionException):
            compose("config", overrides=["+experiment=typo"])


def test_a_dataset_preset_sets_its_recipe_over_the_group_defaults():
    cfg = compose_config()  # data=digits comes after optim/sched in the defaults list
    assert (cfg.optim.lr, cfg.sched.warmup_epochs, cfg.train.epochs) == (1e-3, 3, 15)
    assert (compose_config(["optim.lr=null"]).optim.lr, compose_config(["data=imagenet"]).optim.lr) == (None, None)
    assert learning_rate(compose_config(["data=imagenet"])) == pytest.approx(5e-4 * 4096 / 512)
