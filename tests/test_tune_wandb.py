"""``python -m src.tune wandb SPACE``: a space as W&B sweep files, one per arm, ``method: bayes`` with
``early_terminate``. The committed files are what it writes; each value of each file's parameters, expanded into a
command line by wandb's own agent functions and made fit for Hydra by src.sweeps.agent, composes to the config of
the src.tune trial with the same params; the distributions and the pruner map as W&B's sweep syntax names them."""
import itertools

import yaml
from omegaconf import OmegaConf
from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

from src.sweeps.agent import default_groups, rewrite_argument
from src.train.loop import epoch_metrics
from src.tune import wandb_sweep
from src.tune.dists import check_dist
from src.tune.overrides import arm_folder, recipe_overrides
from src.tune.space import load_space

from conftest import compose_config

# W&B's sweep configuration keys (docs.wandb.ai, "Sweep configuration options")
METHODS = {"grid", "random", "bayes"}
DISTRIBUTIONS = {"constant", "categorical", "int_uniform", "uniform", "q_uniform", "log_uniform_values",
                 "q_log_uniform_values", "inv_log_uniform_values", "normal", "q_normal", "log_normal", "q_log_normal",
                 "beta", "q_beta"}
HYPERBAND_KEYS = {"type", "min_iter", "max_iter", "s", "eta", "strict"}


def test_the_committed_sweep_files_are_what_it_writes(capsys):
    assert wandb_sweep.main(["fusion_proxy", "--check"]) == 0, capsys.readouterr().out


def test_a_changed_space_makes_the_files_stale_and_check_names_them(tmp_path, capsys):
    assert wandb_sweep.main(["fusion_proxy", "--out", str(tmp_path)]) == 0
    (tmp_path / "fusion=cross.yaml").write_text("method: grid\n")
    assert wandb_sweep.main(["fusion_proxy", "--out", str(tmp_path), "--check"]) == 1
    assert "fusion=cross.yaml differ from fusion_proxy.yaml" in capsys.readouterr().out


def points(parameters):
    """Every parameter's low end, then each parameter's other end (a range) or other values (a list) in turn."""
    choices = {key: spec["values"] if "values" in spec else [spec["min"], spec["max"]]
               for key, spec in parameters.items()}
    low = {key: values[0] for key, values in choices.items()}
    yield low
    for key, values in choices.items():
        for value in values[1:]:
            yield {**low, key: value}


def agent_command(spec, params):
    """The command wandb's agent runs for ``params`` (wandb_agent.Agent._command_run's expansion)."""
    sweep_vars = create_sweep_command_args({"args": {key: {"value": value} for key, value in params.items()}})
    sweep_vars["env"] = ["/usr/bin/env"]
    command = []
    for chunk in create_sweep_command(list(spec["command"])):
        chunk = str(chunk)
        command += sweep_vars.get(chunk[2:-1], []) if chunk.startswith("${") and chunk.endswith("}") else [chunk]
    return command


def job_config(overrides):
    config = OmegaConf.to_container(compose_config(overrides), resolve=True)
    config.pop("logger")
    return config


def test_each_arms_points_compose_to_the_trials_config():
    """Every value of every parameter on the first arm; the others (their fusion apart, the same file) at one."""
    space = load_space("fusion_proxy")
    groups = default_groups()
    for arm in space.arms:
        spec = yaml.safe_load((wandb_sweep.OUT / "fusion_proxy" / f"{arm_folder(arm)}.yaml").read_text())
        assert spec["method"] == "bayes" and spec["metric"] == {"name": "selection/top1", "goal": "maximize"}
        assert spec["early_terminate"] == {"type": "hyperband", "min_iter": 4, "eta": 3}
        assert spec["run_cap"] == space.trials
        for params in itertools.islice(points(spec["parameters"]), None if arm == space.arms[0] else 1):
            command = agent_command(spec, params)
            assert command[:4] == ["/usr/bin/env", "python", "-m", "src.run"]
            argv = [rewrite_argument(arg, groups) for arg in command[4:]]
            assert job_config(argv) == job_config(recipe_overrides(space.base, arm, params)), argv


def test_each_metric_is_named_as_the_run_logs_it_each_epoch():
    """LOGGED must follow epoch_metrics: a W&B sweep on a key no run logs would judge nothing."""
    row = {"epoch": 3, "val_loss": 0.5, "top1": 91.0, "top5": 99.0, "train_loss": 0.6, "epoch_time_s": 1.0,
           "images_per_s": 10.0, "top1_branch": [80.0, 85.0], "ema_top1": 92.0, "selection_top1": 93.0,
           "selection_loss": 0.4}
    logged = epoch_metrics(row)
    assert {metric: logged[key] for metric, key in wandb_sweep.LOGGED.items()} == {
        metric: row[metric] for metric in wandb_sweep.LOGGED}


def test_each_kind_of_distribution_maps_to_w_and_bs_syntax():
    def mapped(spec):
        return wandb_sweep.parameter(check_dist("key", spec, ""))
    assert mapped({"float": [1e-4, 3e-3], "log": True}) == {"distribution": "log_uniform_values", "min": 1e-4,
                                                            "max": 3e-3}
    assert mapped({"float": [0.0, 1.0]}) == {"distribution": "uniform", "min": 0.0, "max": 1.0}
    assert mapped({"float": [0.0, 1.0], "step": 0.25}) == {"distribution": "q_uniform", "min": 0.0, "max": 1.0,
                                                           "q": 0.25}
    assert mapped({"int": [0, 4]}) == {"distribution": "int_uniform", "min": 0, "max": 4}
    assert mapped({"int": [0, 8], "step": 4}) == {"values": [0, 4, 8]}  # W&B's int_uniform has no step
    assert mapped({"categorical": [None, 0.5, "x"]}) == {"values": [None, 0.5, "x"]}
    for spec in ({"float": [1e-4, 3e-3], "log": True}, {"float": [0.0, 1.0], "step": 0.25}, {"int": [0, 4]}):
        assert mapped(spec).get("distribution", "categorical") in DISTRIBUTIONS


def test_the_pruners_w_and_b_lacks_are_said_and_left_out(tmp_path):
    base = yaml.safe_load(load_space("fusion_proxy").path.read_text())
    for pruner, stopping, said in (({"type": "hyperband", "min_resource": 2, "reduction_factor": 2},
                                    {"type": "hyperband", "min_iter": 2, "eta": 2}, "first rung 2 epochs, rate 2"),
                                   ({"type": "median"}, None, "W&B has no median pruner"),
                                   ({"type": "none"}, None, "the space prunes nothing")):
        path = tmp_path / "space.yaml"
        path.write_text(yaml.safe_dump({**base, "pruner": pruner, "sampler": {"type": "random", "seed": 0}}))
        space = load_space(str(path))
        spec = wandb_sweep.sweep_spec(space, space.arms[0])
        assert spec.get("early_terminate") == stopping and spec["method"] == "random"
        assert set(spec.get("early_terminate", {})) <= HYPERBAND_KEYS and spec["method"] in METHODS
        assert said in wandb_sweep.sweep_file(space, space.arms[0], tmp_path)
