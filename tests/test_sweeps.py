"""The ablation presets (conf/experiment/*_ablation*.yaml), their index (experiments/ablations.yaml) and what
``python -m src.sweeps`` writes from both (the W&B sweep files experiments/<preset>.yaml and the README table):
the index names every ablation preset and only presets that exist, the committed files are what the generator
writes and its ``--check`` catches a changed preset, a hand-edited table row and a sweep file nothing generates,
every combination a preset sweeps composes with Hydra's compose API and builds a valid model, every W&B grid point
composes to the config of the preset's same point, and one W&B combination, expanded into a command line by
wandb's own agent functions, trains for one epoch through src.run."""
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

from src.sweeps.agent import default_groups, rewrite_argument
from src.sweeps.generate import README, check, expected_files, orphan_files, stale_files
from src.sweeps.index import INDEX, preset_names, read_index
from src.train.build import build_model

from conftest import CONF, ROOT, cli_env, compose_config

TUNED = CONF / "tuned_fusion"  # the recipes src.tune chose (fusion_tuned_cpu)

INDEXED = read_index()
PRESETS = preset_names(INDEXED)
SWEEP_FILES = sorted(path for path in (ROOT / "experiments").glob("*.yaml") if path != INDEX)
ABLATIONS = ("fusion", "patch_size", "branch_width", "branch_depth", "cross_layers", "encoders", "class_token",
             "scales")
# a tuned ablation's ImageNet twin is its shared-recipe ablation's preset (the same rows; no ImageNet search shipped)
TUNED_ABLATIONS = {"fusion_tuned": ("fusion_ablation", "fusion_tuned_cpu")}
# CPU presets run the proxy's model (cpu/proxy.yaml); the branches ablation sets it against its three-branch twin
CPU_MODELS = {"branches_ablation_cpu": {"fusionvit_micro_p8_32", "fusionvit_micro3_p8_32"}}
# ImageNet presets run CrossViT-S; the scales ablation sets it against DeiT-S
IMAGENET_MODELS = {"scales_ablation": {"fusionvit_small_240", "fusionvit_deit_small_224"}}


def build_on_meta(cfg) -> None:
    """Constructs the model without memory or init time (the architecture checks still run)."""
    with torch.device("meta"):
        build_model(cfg)


def preset_combinations(preset: str):
    """The job overrides Hydra's basic sweeper makes from the preset's hydra.sweeper.params."""
    params = compose_config([f"+experiment={preset}"], hydra=True).hydra.sweeper.params
    parsed = OverridesParser.create().parse_overrides([f"{key}={value}" for key, value in params.items()])
    choices = [[f"{override.get_key_element()}={value}" for value in override.sweep_string_iterator()]
               if override.is_sweep_override() else [f"{override.get_key_element()}={override.value()}"]
               for override in parsed]
    return [list(combination) for combination in itertools.product(*choices)]


def sweep_combinations(path: Path):
    """Every grid point of a W&B sweep file as wandb's agent would pass it: args_no_hyphens."""
    parameters = yaml.safe_load(path.read_text())["parameters"]
    keys = list(parameters)
    grids = [spec["values"] if "values" in spec else [spec["value"]] for spec in parameters.values()]
    for values in itertools.product(*grids):
        args = {key: {"value": value} for key, value in zip(keys, values)}
        yield args, create_sweep_command_args({"args": args})["args_no_hyphens"]


def test_every_paper_ablation_has_a_preset_a_cpu_twin_and_two_sweep_files():
    names = {path.stem for path in SWEEP_FILES}
    twins = {ablation.name: (ablation.imagenet_preset, ablation.preset) for ablation in INDEXED
             if ablation.imagenet_preset is not None}
    assert set(twins) == set(ABLATIONS) | set(TUNED_ABLATIONS)
    for ablation in ABLATIONS:
        assert twins[ablation] == (f"{ablation}_ablation", f"{ablation}_ablation_cpu")
    for ablation, pair in TUNED_ABLATIONS.items():
        assert twins[ablation] == pair
    assert {name for pair in twins.values() for name in pair} <= names


def test_the_index_names_every_ablation_preset_and_only_presets_that_exist():
    on_disk = {path.stem for path in (CONF / "experiment").glob("*_ablation*.yaml")}
    assert on_disk - set(PRESETS) == set(), "add these presets to experiments/ablations.yaml"
    assert [name for name in PRESETS if not (CONF / "experiment" / f"{name}.yaml").is_file()] == []


def test_an_index_entry_naming_a_missing_preset_is_an_error(tmp_path):
    index = tmp_path / INDEX.name
    index.write_text(INDEX.read_text().replace("preset: encoders_ablation_cpu", "preset: encoder_ablation_cpu"))
    with pytest.raises(ValueError, match="encoder_ablation_cpu; fix the name or add conf/experiment/<name>.yaml"):
        read_index(index)


@pytest.mark.slow  # 1-3 s a preset, about 25 s in all: every grid point composed and built on the meta device
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_combination_composes_and_builds(preset):
    combinations = preset_combinations(preset)
    assert len(combinations) >= 2
    architectures = set()
    for overrides in combinations:
        key = json.dumps([str(o) for o in overrides if not o.startswith("seed=")])
        if key in architectures:  # seeds share the rest of the config: composed and built once
            continue
        architectures.add(key)
        cfg = compose_config([f"+experiment={preset}", *overrides])
        recipe = (cfg.train.epochs, cfg.train.batch_size, cfg.sched.warmup_epochs)
        if preset.endswith("_cpu"):
            assert cfg.model.name in CPU_MODELS.get(preset, {"fusionvit_micro_p8_32"})
            assert cfg.data.name == "multiscale_digits" and cfg.data.render.min_scale == 0.3
            assert cfg.model.multi_conv is True  # micro_p8_32's conv stem, on every row (one-branch rows too)
            if preset == "fusion_tuned_cpu":  # each fusion at the recipe src.tune chose for it (conf/tuned_fusion)
                tuned = yaml.safe_load((TUNED / f"{cfg.fusion.name}.yaml").read_text())
                assert (cfg.optim.lr, cfg.sched.warmup_epochs) == (tuned["optim"]["lr"],
                                                                   tuned["sched"]["warmup_epochs"])
                assert recipe[:2] == (12, 64) and cfg.data.selection == 0  # trained on all the training digits
            else:
                assert recipe == (12, 64, 2) and cfg.optim.lr == 1e-3 and cfg.optim.clip_grad == 1.0  # multiscale_cpu
        else:
            assert cfg.model.name in IMAGENET_MODELS.get(preset, {"fusionvit_small_240"})
            assert cfg.data.name == "imagenet"
            assert recipe == (300, 4096, 30) and cfg.optim.lr is None  # recipe=crossvit_imagenet
        build_on_meta(cfg)  # raises ValueError on a patch size, width or depth the model cannot take
    assert len(architectures) >= 2


def job_config(overrides):
    """The resolved config a job gets, less the logger (a W&B agent's run logs online)."""
    config = OmegaConf.to_container(compose_config(overrides), resolve=True)
    config.pop("logger")
    return config


@pytest.mark.slow  # as above: every W&B grid point composed
@pytest.mark.parametrize("preset", PRESETS)
def test_every_wandb_grid_point_composes_to_the_config_of_the_presets_point(preset):
    groups = default_groups()  # an agent's run adds `+` to a group the defaults do not list (scales), as src.run does
    wandb_points = [[rewrite_argument(arg, groups) for arg in argv]
                    for _, argv in sweep_combinations(ROOT / "experiments" / f"{preset}.yaml")]
    preset_points = preset_combinations(preset)
    swept = {override.split("=", 1)[0].lstrip("+") for override in preset_points[0]}  # `+group=` keys too
    assert len(wandb_points) == len(preset_points)
    first_seed = next((o for o in preset_points[0] if o.startswith("seed=")), None)
    for argv, overrides in zip(wandb_points, preset_points):  # the same grid, in the same order
        assert [arg for arg in argv if arg.split("=", 1)[0].lstrip("+") in swept] == [
            ("+" if (CONF / o.split("=", 1)[0]).is_dir() and o.split("=", 1)[0] not in groups else "") + o
            if not o.startswith("+") else o for o in overrides]
        if first_seed is None or first_seed in overrides:  # another seed changes `seed` alone: composed once
            assert job_config(argv) == job_config([f"+experiment={preset}", *overrides]), argv


@pytest.fixture(scope="module")
def expected():
    return expected_files()


def test_committed_sweep_files_and_readme_table_are_what_src_sweeps_writes(expected):
    assert sorted(expected) == sorted([README, *(f"{name}.yaml" for name in PRESETS)])
    assert stale_files(expected) == [], "experiments/ is stale: run `python -m src.sweeps`"
    assert orphan_files(expected) == []


def copied_tree(tmp_path: Path) -> Path:
    """conf/ and experiments/ copied under ``tmp_path``, to be changed there."""
    shutil.copytree(CONF, tmp_path / "conf")
    shutil.copytree(ROOT / "experiments", tmp_path / "experiments")
    return tmp_path


def test_check_names_the_sweep_file_and_table_a_changed_preset_makes_stale(tmp_path, capsys):
    tree = copied_tree(tmp_path)
    preset = tree / "conf" / "experiment" / "patch_size_ablation_cpu.yaml"
    preset.write_text(preset.read_text().replace('"[8,16],[4,16]"', '"[8,16],[2,16]"'))
    assert check(tree / "conf", tree / "experiments") == 1
    printed = capsys.readouterr().out
    assert "patch_size_ablation_cpu.yaml, README.md" in printed and "run `python -m src.sweeps`" in printed


def test_check_finds_a_hand_edited_table_row_and_a_sweep_file_nothing_writes(tmp_path, expected):
    out = copied_tree(tmp_path) / "experiments"
    readme = out / README
    text = readme.read_text()
    row = re.search(r"`seed=0,1,2` \| (\d+) \| (\d+) \|", text)
    readme.write_text(text.replace(row.group(0), f"`seed=0,1,2` | {row.group(1)} | {int(row.group(2)) + 1} |", 1))
    (out / "old_ablation.yaml").write_text("program: src/run.py\n")
    assert stale_files(expected, out) == [README]
    assert orphan_files(expected, out) == ["old_ablation.yaml"]


@pytest.mark.slow
def test_one_sweep_combination_runs_through_wandbs_command_line(tmp_path):
    """Mirrors wandb_agent.Agent._command_run: create_sweep_command, then each ``${macro}`` replaced by the
    lists create_sweep_command_args makes (``env`` is /usr/bin/env there)."""
    spec = yaml.safe_load((ROOT / "experiments" / "fusion_ablation_cpu.yaml").read_text())
    args, _ = next(sweep_combinations(ROOT / "experiments" / "fusion_ablation_cpu.yaml"))
    args.update({"data": {"value": "synthetic"}, "data.num_train": {"value": 32}, "data.num_val": {"value": 16},
                 "train.batch_size": {"value": 16}, "train.epochs": {"value": 1}, "logger": {"value": "none"},
                 "train.threads": {"value": 1}, "hydra.run.dir": {"value": str(tmp_path / "run")}})
    sweep_vars = create_sweep_command_args({"args": args})
    sweep_vars["env"] = ["/usr/bin/env"]
    command = []
    for chunk in create_sweep_command(list(spec["command"])):
        chunk = str(chunk)
        command += sweep_vars.get(chunk[2:-1], []) if chunk.startswith("${") and chunk.endswith("}") else [chunk]
    assert command[:4] == ["/usr/bin/env", "python", "-m", "src.run"] and "fusion=none" in command
    env = cli_env(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")  # `python` is ours
    process = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "completed" and results["choices"]["fusion"] == "none"
    assert results["config"]["data"]["name"] == "synthetic" and len(results["history"]) == 1


def job_folder(overrides) -> Path:
    hydra_cfg = compose_config(overrides, hydra=True).hydra
    return Path(hydra_cfg.sweep.dir) / hydra_cfg.sweep.subdir


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_jobs_get_the_same_folder_each_time_like_make_run(preset):
    """Re-running a preset must land in the folders of the first run (skip or resume), not in a new
    timestamped copy that collate would count twice."""
    overrides = [f"+experiment={preset}", *preset_combinations(preset)[-1]]
    first = job_folder(overrides)
    assert job_folder(overrides) == first
    assert job_folder([*overrides, "train.threads=1", "train.force=true"]) == first  # excluded, as in make_run
    assert first.parent == Path("multirun") / preset and "seed=" in first.name
    excluded = compose_config([f"+experiment={preset}"], hydra=True).hydra.job.config.override_dirname.exclude_keys
    make_run = compose_config(["+experiment=make_run"], hydra=True).hydra.job.config.override_dirname.exclude_keys
    assert list(excluded) == list(make_run)
