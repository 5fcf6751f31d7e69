"""The config tree composes with Hydra's compose API: every group option, the experiments, and typo errors;
each default is stated once (src/config.py) and the recipe is a group of its own."""
import dataclasses

import pytest
import timm
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from src import config as schema
from src.models import VARIANTS, count_params, fusion_names
from src.train.build import build_model, learning_rate, model_kwargs

from conftest import CONF, compose_config

GROUPS = ("model", "fusion", "data", "optim", "sched", "logger", "recipe", "arch")


def options(group: str):
    if group == "model":  # not files: one option per VARIANTS entry (src.config.register_configs)
        return sorted(VARIANTS)
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes(group, option):
    cfg = compose_config([f"{group}={option}"])
    assert OmegaConf.missing_keys(cfg) == set()
    OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes(experiment):
    OmegaConf.to_container(compose_config([f"+experiment={experiment}"]), resolve=True)


CPU_PRESETS = sorted(path.stem for path in (CONF / "experiment").glob("*_cpu.yaml")) + ["make_run"]
OVERLAY = ("cpu/proxy", "cpu/digits")  # conf/experiment/cpu: the CPU setting, stated once


@pytest.mark.parametrize("preset", CPU_PRESETS)
def test_every_cpu_preset_takes_the_cpu_overlay_and_restates_none_of_it(preset):
    spec = yaml.safe_load((CONF / "experiment" / f"{preset}.yaml").read_text())
    entries = [entry if isinstance(entry, str) else next(iter(entry)) for entry in spec["defaults"]]
    assert set(OVERLAY) & set(entries), f"{preset}: list cpu/proxy (or cpu/digits) in its defaults"
    assert not {"override /data", "override /recipe"} & set(entries), f"{preset}: data and recipe come from cpu/"
    assert "cpu/digits" in entries or "override /model" not in entries, f"{preset}: the model comes from cpu/proxy"
    assert "mode" not in spec.get("logger", {}), f"{preset}: logger.mode comes from cpu/digits"
    params = spec.get("hydra", {}).get("sweeper", {}).get("params") or {}
    proxy_seeds = yaml.safe_load((CONF / "experiment" / "cpu" / "proxy.yaml").read_text())["hydra"]["sweeper"]
    proxy_seeds = str(proxy_seeds["params"]["seed"]).split(",")
    seeds = str(params.get("seed", ",".join(proxy_seeds))).split(",")
    if preset == "make_run":  # its seeds are the fusion design's next block after the shipped 0-12 (make run)
        assert seeds == ["13", "14"], f"{preset}: the first block analysis.sequential adds to results/cpu/fusion"
        return
    assert seeds[:len(proxy_seeds)] == proxy_seeds, f"{preset}: the seeds come from cpu/proxy (a preset may add more)"


def test_groups_cover_every_fusion_and_the_model_options_are_the_timm_names():
    # one option per strategy, named after it; other options (all_attn_residual) are settings of a strategy
    assert set(fusion_names()) <= set(options("fusion"))
    for option in options("fusion"):
        assert compose_config([f"fusion={option}"]).fusion.name in fusion_names(), option
    assert not (CONF / "model").exists()
    assert set(VARIANTS) == set(timm.list_models("fusionvit_*"))
    for name in VARIANTS:
        assert compose_config([f"model={name}"]).model.name == name


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_model_option_states_the_variants_whole_architecture(name):
    cfg = compose_config([f"model={name}"])
    kwargs = model_kwargs(cfg)
    expected = VARIANTS[name]
    assert set(expected) == {key for key, value in cfg.model.items() if key not in ("name", "drop_path_rate")
                             and value is not None}  # every architecture value visible in --cfg job
    for key in ("img_size", "multi_conv"):
        assert kwargs[key] == expected[key]
    for key in ("img_scale", "patch_size", "embed_dim", "num_heads", "mlp_ratio"):
        assert list(kwargs[key]) == list(expected[key])
    assert [tuple(d) for d in kwargs["depth"]] == [tuple(d) for d in expected["depth"]]


def test_an_override_of_a_model_value_reaches_the_model():
    model = build_model(compose_config(["model=fusionvit_mini_32", "model.patch_size=[2,8]"]))
    assert model.patch_embed[0].patch_size == (2, 2)


@pytest.mark.parametrize("fusion", sorted(fusion_names()))
def test_every_fusion_option_builds_the_model(fusion):
    model = build_model(compose_config([f"fusion={fusion}"]))
    assert model.fusion_name == fusion


def test_defaults_are_the_cpu_digits_run():
    cfg = compose_config()
    assert (cfg.model.name, cfg.fusion.name, cfg.data.name, cfg.logger.name) == (
        "fusionvit_micro_16", "cross", "digits", "wandb")


def test_sweep_axes_are_plain_overrides():
    cfg = compose_config(["model.patch_size=[2,8]", "model.embed_dim=[48,192]", "fusion.layers=2",
                          "model.depth=[[2,2,0],[2,2,0]]", "seed=3"])
    model = build_model(cfg)
    direct = timm.create_model("fusionvit_micro_16", fusion="cross", num_classes=10, patch_size=(2, 8),
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


def test_the_recipe_is_a_group_of_its_own_and_a_dataset_leaves_it_alone():
    cfg = compose_config()  # recipe=digits_cpu comes after optim/sched in the defaults list
    assert (cfg.optim.lr, cfg.sched.warmup_epochs, cfg.train.epochs, cfg.train.batch_size) == (2e-3, 3, 16, 64)
    for data in options("data"):
        changed = compose_config([f"data={data}"])
        assert (changed.train, changed.optim, changed.sched) == (cfg.train, cfg.optim, cfg.sched), data
    paper = compose_config(["data=imagenet", "recipe=crossvit_imagenet"])
    assert (paper.train.epochs, paper.train.batch_size, paper.sched.warmup_epochs) == (300, 4096, 30)
    assert learning_rate(paper) == pytest.approx(5e-4 * 4096 / 512)
    deit = compose_config(["recipe=deit"])
    assert (deit.train, deit.optim, deit.sched) == (schema.TrainConfig(), schema.OptimConfig(), schema.SchedConfig())


SCHEMA_OF_GROUP = {"model": schema.ModelConfig, "fusion": schema.FusionConfig, "data": schema.DataConfig,
                   "optim": schema.OptimConfig, "sched": schema.SchedConfig, "logger": schema.LoggerConfig,
                   "train": schema.TrainConfig}


def schema_default(path):
    """The src/config.py default of a dotted key, or a marker when it has none."""
    node = schema.Config
    for part in path[:-1]:
        node = SCHEMA_OF_GROUP.get(part)
        if node is None:
            return "no default"
    fields = {f.name: f for f in dataclasses.fields(node)}
    field = fields.get(path[-1])
    if field is None or field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
        return "no default"
    return field.default if field.default is not dataclasses.MISSING else field.default_factory()


def leaves(node, path=()):
    if isinstance(node, dict) and path[-1:] != ("options",):
        for key, value in node.items():
            yield from leaves(value, (*path, key))
    else:
        yield path, node


# conf/tuned_fusion is written by python -m src.tune best --write-group: a recipe states every key the search tuned,
# a default included; conf/tune holds search spaces, not configs
@pytest.mark.parametrize("path", sorted(p for p in CONF.rglob("*.yaml")
                                        if not {"hydra", "tuned_fusion", "tune"} & set(p.parts)),
                         ids=lambda p: str(p.relative_to(CONF)))
def test_a_yaml_value_never_repeats_its_schema_default(path):
    text = path.read_text()
    package = () if "# @package _global_" in text or path.parent == CONF else (path.parent.name,)
    values = yaml.safe_load(text) or {}
    values.pop("defaults", None), values.pop("hydra", None)
    repeated = [".".join(key) for key, value in leaves(values, package) if value == schema_default(key)]
    assert repeated == [], f"{path.name} restates src/config.py's default for {repeated}: drop the line"
