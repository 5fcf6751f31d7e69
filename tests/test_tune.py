"""``python -m src.tune``: real Optuna studies in a real SQLite file, every trial a real ``python -m src.run`` job on a
few synthetic images. A study runs each trial as a normal run dir and records what it cost; a trial that cannot
learn is pruned (its run stopped, recorded ``pruned``); a worker killed with kill -9 is resumed by the same command,
its trial retried in the same run dir; two workers share one study and meet its budget exactly; every bad input
fails before any run dir exists, naming the key and the fix."""
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from src.tune.__main__ import main
from src.tune.errors import BadSpace
from src.tune.group import write_group
from src.tune.overrides import hydra_value, parses_back

from conftest import ROOT, cli_env, command, run_module, wait_for

# 8 epochs of synthetic images (a quarter held out for selection), each many times the worker's poll of
# results.json: a trial takes a process start and a few seconds, and a run the pruner stops after its first epoch or
# two has most of its epochs left.
BASE = ["+experiment=smoke", "model=fusionvit_micro_16", "data.num_train=1024", "data.selection=0.25",
        "data.num_val=64", "train.batch_size=32", "train.epochs=8", "train.threads=1", "sched.warmup_epochs=0"]
GOOD, DEAD = 3.0e-3, 1.0e-8  # the lr that learns in one epoch, and one that cannot learn at all


def write_space(folder: Path, **changes) -> Path:
    space = {"base": BASE, "arms": {"fusion": ["none"]},
             "space": {"optim.lr": {"categorical": [GOOD, DEAD]}, "sched.warmup_epochs": {"int": [0, 2]}},
             "trials": 2, "metric": "selection_top1", "pruner": {"type": "none"}, "sampler": {"type": "tpe", "seed": 0},
             "storage": f"sqlite:///{folder / 'optuna.db'}", "out": str(folder / "out")}
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump({**space, **changes}))
    return path


def tune(space: Path, *args: str) -> subprocess.CompletedProcess:
    done = run_module("src.tune", str(space), *args, merge_stderr=True)
    assert done.returncode == 0, done.stdout[-4000:]
    return done


def trials(folder: Path, arm: str = "fusion=none") -> list:
    return optuna.load_study(study_name=f"space:{arm}", storage=f"sqlite:///{folder / 'optuna.db'}").trials


def summary(folder: Path, arm: str = "fusion=none") -> dict:
    return json.loads((folder / "out" / arm / "study.json").read_text())


def record(run_dir) -> dict:
    return json.loads((Path(run_dir) / "results.json").read_text())


# -- a study, its costs, a pruned trial ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pruned_study(tmp_path_factory) -> Path:
    """Three trials: the good lr first, then the dead one, which successive halving stops at its first report (it
    is below the only other trial there, whose first epoch already learned), then a third, all three queued (the
    sampler's own draws are the two workers' test's: a draw here could repeat the dead trial, whose run dir it would
    then resume and record again)."""
    folder = tmp_path_factory.mktemp("study")
    space = write_space(folder, trials=3, enqueue=[{"optim.lr": GOOD, "sched.warmup_epochs": 0},
                                                   {"optim.lr": DEAD, "sched.warmup_epochs": 0},
                                                   {"optim.lr": GOOD, "sched.warmup_epochs": 2}],
                        pruner={"type": "successive_halving", "min_resource": 1, "reduction_factor": 2})
    tune(space)
    return folder


@pytest.mark.slow
def test_a_study_runs_each_trial_as_a_run_dir_of_its_params_and_records_its_costs(pruned_study, capsys):
    study = summary(pruned_study)
    assert study["totals"]["complete"] + study["totals"]["pruned"] == 3 and study["totals"]["fail"] == 0
    epochs_by_run = {}
    for trial in study["trials"]:
        run = record(trial["run_dir"])
        assert run["config"]["optim"]["lr"] == trial["params"]["optim.lr"]
        assert run["config"]["sched"]["warmup_epochs"] == trial["params"]["sched.warmup_epochs"]
        assert run["config"]["fusion"]["name"] == "none"
        assert "study=space:fusion=none" in run["config"]["logger"]["tags"]
        assert trial["cpu_s"] > 0 and trial["wall_s"] > 0 and trial["epochs"] == len(run["history"])
        epochs_by_run[trial["run_dir"]] = len(run["history"])
    assert study["totals"]["trial_epochs"] == sum(epochs_by_run.values())
    assert study["grid"]["points"] == 2 * 3 and study["grid"]["trial_epochs"] == 6 * 8
    assert study["grid"]["cpu_s"] == pytest.approx(48 * study["grid"]["cpu_s_per_epoch"], rel=1e-2)
    best = json.loads((pruned_study / "out" / "best.json").read_text())["fusion=none"]
    assert best["trial"] == study["best"]["trial"] and "fusion=none" in best["overrides"]
    assert best["value"] == max(t["value"] for t in study["trials"] if t["state"] == "complete")
    assert main(["report", str(pruned_study / "space.yaml")]) == 0
    assert "| fusion=none" in capsys.readouterr().out and (pruned_study / "out" / "report.md").is_file()


@pytest.mark.slow
def test_a_trial_that_cannot_learn_is_pruned_before_its_last_epoch(pruned_study):
    good, dead = trials(pruned_study)[:2]
    assert (good.state, dead.state) == (TrialState.COMPLETE, TrialState.PRUNED)
    assert dead.params["optim.lr"] == DEAD
    run = record(dead.user_attrs["run_dir"])
    assert run["status"] == "pruned" and len(run["history"]) < 8
    assert run["reason"].startswith(f"pruned by Optuna's SuccessiveHalvingPruner after epoch {dead.last_step} of 8: "
                                    f"selection_top1 {dead.intermediate_values[dead.last_step]:.2f}")
    assert good.value == record(good.user_attrs["run_dir"])["history"][-1]["selection_top1"]  # the last epoch's


# -- kill -9 and resume ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_killed_worker_is_resumed_by_the_same_command_in_the_same_run_dir(tmp_path):
    space = write_space(tmp_path, trials=1, enqueue=[{"optim.lr": GOOD, "sched.warmup_epochs": 0}])
    with open(tmp_path / "worker.log", "w") as log:
        worker = subprocess.Popen(command("src.tune", str(space)), cwd=ROOT, env=cli_env(), stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    arm = tmp_path / "out" / "fusion=none"
    wait_for(lambda: any(record(path.parent)["history"] for path in arm.glob("*/results.json")),
             "the first trial's first epoch", worker)
    os.killpg(worker.pid, signal.SIGKILL)  # the worker's whole process group; its run is in a session of its own
    worker.wait()
    tune(space)
    killed, retried = trials(tmp_path)
    assert (killed.state, retried.state) == (TrialState.FAIL, TrialState.COMPLETE)
    assert retried.params == killed.params and retried.system_attrs["retry_history"] == [0]
    assert retried.user_attrs["run_dir"] == killed.user_attrs["run_dir"]
    run_dir = Path(retried.user_attrs["run_dir"])
    run = record(run_dir)
    assert run["status"] == "completed" and len(run["history"]) == 8
    assert "resumed from" in (run_dir / "run.log").read_text() or run["lost_launches"]
    assert 0 < summary(tmp_path)["trials"][1]["epochs_trained"] < 8  # the killed launch's epochs were kept
    assert "died: retried as trial 1" in summary(tmp_path)["trials"][0]["reason"]


# -- two workers -----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_workers_share_one_study_and_meet_its_budget_exactly(tmp_path):
    space = write_space(tmp_path, trials=3, base=[*BASE, "train.epochs=3"],
                        space={"optim.lr": {"float": [1.0e-3, 3.0e-3], "log": True},
                               "sched.warmup_epochs": {"int": [0, 2]}})
    tune(space, "--workers", "2")
    done = trials(tmp_path)
    assert [trial.number for trial in done] == [0, 1, 2]
    assert [trial.state for trial in done] == [TrialState.COMPLETE] * 3
    assert len({trial.user_attrs["worker"]["pid"] for trial in done}) == 2
    assert len({trial.user_attrs["run_dir"] for trial in done}) == 3


# -- bad inputs ------------------------------------------------------------------------------------------------
BAD = {  # what is wrong: (changes to the space, command-line args, the message)
    "inverted range": ({"space": {"optim.lr": {"float": [3.0e-3, 1.0e-4]}}}, (),
                       r"space.optim.lr: float: \[0.003, 0.0001\] is inverted: low must be below high"),
    "empty range": ({"space": {"sched.warmup_epochs": {"int": [2, 2]}}}, (), r"int: \[2, 2\] is empty"),
    "empty categorical": ({"space": {"optim.clip_grad": {"categorical": []}}}, (), r"categorical: \[\] has no choices"),
    "log from zero": ({"space": {"optim.lr": {"float": [0.0, 1.0e-3], "log": True}}}, (), r"log: true needs low > 0"),
    "unknown space key": ({"space": {"optim.lrr": {"float": [1.0e-4, 1.0e-3]}}}, (),
                          r"space.optim.lrr is not a config key \(did you mean optim.lr\?\)"),
    "value the key refuses": ({"space": {"optim.lr": {"float": [-1.0, 1.0e-3]}}}, (),
                              r"optim.lr=-1.0: must be a finite number > 0"),
    "no selection split": ({"base": [b for b in BASE if not b.startswith("data.selection")]}, (),
                           r"metric selection_top1 is logged only with a selection split.*add data.selection=0.2"),
    "selection split of every image": ({"base": [*BASE, "data.selection=1024"]}, (),
                                       r"data.selection=1024 holds out 1024 of the 1024 training images and leaves "
                                       r"none to train on"),
    "base that does not compose": ({"base": [*BASE, "+experiment=nope"]}, (), r"Could not find 'experiment/nope'"),
    "no trials": ({"trials": 0}, (), r"trials: 0: must be an integer >= 1"),
    "--trials 0": ({}, ("--trials", "0"), r"trials: 0: must be an integer >= 1"),
    "unknown file key": ({"trails": 3}, (), r"unknown key 'trails' \(did you mean trials\?\)"),
    "pruner past the last epoch": ({"pruner": {"type": "successive_halving", "min_resource": 8}}, (),
                                   r"judges a trial first after epoch 8, and a run has 8 epochs"),
    "unknown pruner": ({"pruner": {"type": "halving"}}, (), r"pruner: type 'halving': pick one of successive_halving"),
    "enqueued value outside": ({"enqueue": [{"optim.lr": 0.5}]}, (), r"enqueue\[0\]: optim.lr=0.5 is outside"),
    "storage of no known kind": ({}, ("--storage", "nosuchdb://x"), r"storage nosuchdb://x cannot be opened .*sqlite"),
    "unknown arm": ({}, ("--arm", "fusion=cros"), r"--arm fusion=cros is not an arm of the space: pick from"),
}


@pytest.mark.parametrize("changes, args, message", BAD.values(), ids=BAD)
def test_a_bad_input_fails_before_any_run_naming_the_key_and_the_fix(tmp_path, capsys, changes, args, message):
    assert main([str(write_space(tmp_path, **changes)), *args]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and re.search(message, error), error
    assert not (tmp_path / "out").exists() and not (tmp_path / "optuna.db").exists()


def test_a_storage_that_cannot_be_opened_fails_first(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    assert main([str(write_space(tmp_path)), "--storage", f"sqlite:///{tmp_path / 'a_file' / 'x.db'}"]) == 1
    assert "cannot be opened" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_the_shipped_spaces_pass_every_check_without_writing(capsys):
    storages = [ROOT / "tuning" / "fusion_proxy.db", ROOT / "tuning" / "smoke" / "optuna.db"]
    existed = [path.exists() for path in storages]
    for name in ("fusion_proxy", "smoke"):
        assert main([name, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "fusion_proxy:fusion=all_attn: 12 trials of up to 12 epochs" in out and "192 points x 12 epochs" in out
    assert [path.exists() for path in storages] == existed


@pytest.mark.parametrize("value", [None, True, 3, 1e-8, 0.0003, "cross", "cpu/proxy", "/a/fusion=cross,model=x",
                                   "true", "1e-3", "it's", ["tune", "study=x:fusion=cross", "trial=3"]])
def test_an_override_value_reaches_hydra_as_itself(value):
    assert parses_back(hydra_value(value), value)


def test_the_best_recipes_become_options_of_a_config_group_that_set_the_arm_and_its_recipe(tmp_path):
    (tmp_path / "fusion").mkdir()
    best = {"fusion=cross": {"overrides": ["data.selection=0.2", "fusion=cross", "optim.lr=0.002"],
                             "params": {"optim.lr": 0.002, "optim.clip_grad": None, "sched.warmup_epochs": 1},
                             "value": 95.25, "trial": 7, "metric": "selection_top1"},
            "model.depth=[1,2]": {"overrides": ["optim.lr=0.001"], "params": {"optim.lr": 0.001}, "value": 90.0,
                                  "trial": 2, "metric": "selection_top1"}}
    with pytest.raises(BadSpace, match=r"arm 'model.depth=\[1,2\]': --write-group takes arms of one key"):
        write_group("fusion_proxy", best, "tuned_fusion", conf=tmp_path)
    del best["model.depth=[1,2]"]
    [path] = write_group("fusion_proxy", best, "tuned_fusion", conf=tmp_path)
    assert path == tmp_path / "tuned_fusion" / "cross.yaml"
    text = path.read_text()
    assert text.startswith("# @package _global_\n# The best recipe of fusion=cross in python -m src.tune fusion_proxy: "
                           "trial 7, selection_top1 95.25")
    assert yaml.safe_load(text) == {"defaults": [{"override /fusion": "cross"}],
                                    "optim": {"lr": 0.002, "clip_grad": None}, "sched": {"warmup_epochs": 1}}


@pytest.mark.slow  # the complete trials (at most two) trained again on one new seed each
def test_recheck_trains_the_top_trials_again_on_new_seeds_and_says_whether_the_best_kept_its_place(pruned_study):
    space = pruned_study / "space.yaml"
    done = run_module("src.tune", "recheck", str(space), "--top", "2", "--seeds", "1", merge_stderr=True)
    assert done.returncode == 0, done.stdout[-4000:]
    rows = json.loads((pruned_study / "out" / "recheck.json").read_text())
    complete = sorted((row for row in summary(pruned_study)["trials"] if row["state"] == "complete"),
                      key=lambda row: (-row["value"], row["number"]))
    assert complete and [row["trial"] for row in rows] == [row["number"] for row in complete[:2]]
    assert [row["rank"] for row in rows] == list(range(1, len(rows) + 1))
    for row, trial in zip(rows, complete):
        assert row["tuning_value"] == trial["value"] and row["seeds"] == [1] and len(row["new_values"]) == 1
        assert row["curse"] == pytest.approx(row["tuning_value"] - row["new_mean"])
        [run] = (pruned_study / "out" / "fusion=none" / "recheck" / Path(trial["run_dir"]).name).glob("*/results.json")
        recorded = json.loads(run.read_text())
        assert recorded["seed"] == 1 and recorded["config"]["optim"]["lr"] == trial["params"]["optim.lr"]
        assert recorded["config"]["data"]["selection"] == 0.25  # judged on the split the trials were chosen on
    text = (pruned_study / "out" / "recheck.md").read_text()
    assert "tuning - new mean" in text
    assert ("- fusion=none: the best trial " in text) == (len(rows) > 1)  # said where there is a runner-up
