"""W&B sweep agents end to end, with no server: one run launched by wandb's own agent code (``Agent._command_run``)
from a grid point of a sweep file, stopped by the agent's SIGTERM after its first epoch, then re-queued the way
W&B re-queues a preempted run (its whole config as arguments, ``_wandb`` included). One module fixture trains it;
the tests read back its results.json, metrics.csv, both offline W&B files (the records read by
``src.train.wandb_files`` with ``wandb.proto``), wandb's own ``wandb sync --dry-run`` listing, and the W&B API's
``Run`` objects built from the logged config and summary."""
import csv
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import wandb
import yaml
from wandb.apis.public import Run as ApiRun
from wandb.wandb_agent import Agent

from analysis.collate import main as collate_main
from analysis.runs.local import load_runs
from analysis.runs.wandb_api import WandbFilter, load_wandb_runs, wandb_run_to_row
from src.sweeps.agent import agent_argv
from src.sync.upload import main as sync_main
from src.sync.upload import wandb_command
from src.train.loggers import flatten
from src.train.naming import arch_keys, group_name
from src.train.record import PROVENANCE_KEYS
from src.train.wandb_files import by_run, find_offline_runs, read_offline_run

from conftest import PATIENCE_S, ROOT, compose_config, wait_for

SWEEP_ID, RUN_ID, PRESET = "sweep0001", "run00001", "patch_size_ablation_cpu"
SWEEP_FILE = ROOT / "experiments" / f"{PRESET}.yaml"
EPOCHS, STEPS_PER_EPOCH, LOG_EVERY = 3, 8, 2
TINY = {"data": "synthetic", "data.num_train": 128, "data.num_val": 32, "train.batch_size": 16,
        "train.epochs": EPOCHS, "train.threads": 1, "logger.log_every_n_steps": LOG_EVERY}


def first_grid_point() -> dict:
    parameters = yaml.safe_load(SWEEP_FILE.read_text())["parameters"]
    return {key: {"value": spec["values"][0] if "values" in spec else spec["value"]}
            for key, spec in parameters.items()}


def launch(agent: Agent, args: dict):
    """What the agent does for a `run` (and a `resume`) command from the server."""
    agent._command_run({"type": "run", "run_id": RUN_ID, "program": "src/run.py", "args": args})
    return agent._run_processes.pop(RUN_ID)


@pytest.fixture(scope="module")
def agent_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("agent")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(base)  # the agent runs the command in its own folder: multirun/wandb/... lands here
        for key, value in {"WANDB_SWEEP_ID": SWEEP_ID, "WANDB_MODE": "offline", "WANDB_SILENT": "true",
                           "WANDB_DIR": str(base), "HYDRA_FULL_ERROR": "0",
                           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}.items():
            patch.setenv(key, value)
        for key in ("WANDB_RUN_ID", "WANDB_SWEEP_PARAM_PATH"):  # the agent sets these in os.environ: undo after
            patch.setenv(key, "")
        agent = Agent(api=None, queue=None, sweep_id=SWEEP_ID)
        agent._sweep_command = yaml.safe_load(SWEEP_FILE.read_text())["command"]
        run_dir = base / "multirun" / "wandb" / SWEEP_ID / RUN_ID
        first = launch(agent, {**first_grid_point(), **{k: {"value": v} for k, v in TINY.items()}})
        # the first epoch is done: preempt it as the agent stops a run
        wait_for((run_dir / "last.pt").exists, f"{run_dir / 'last.pt'}", first._popen, poll_s=0.02)
        first.terminate()
        first_rc = first._popen.wait(timeout=PATIENCE_S)  # the Popen: AgentProcess.wait takes no timeout before 0.2x
        first_results = json.loads((run_dir / "results.json").read_text())
        (first_half,) = find_offline_runs([run_dir])
        config = read_offline_run(first_half).config
        config["_wandb"] = config.get("_wandb") or {"cli_version": wandb.__version__, "python_version": "3"}
        second = launch(agent, {key: {"value": value} for key, value in config.items()})  # W&B's re-queue
        second_rc = second._popen.wait(timeout=PATIENCE_S)
    return SimpleNamespace(run_dir=run_dir, first_rc=first_rc, first_results=first_results, second_rc=second_rc,
                           requeue_argv=list(second._popen.args), first_argv=list(first._popen.args),
                           results=json.loads((run_dir / "results.json").read_text()), base=base)


@pytest.mark.slow
def test_a_preempted_agent_run_is_requeued_with_its_whole_config_and_resumes_its_checkpoint(agent_run):
    assert agent_run.first_rc == 143 and agent_run.first_results["status"] == "interrupted"
    assert agent_run.first_results["reason"].startswith("SIGTERM")
    assert any(arg.startswith("_wandb={") for arg in agent_run.requeue_argv)  # what Hydra alone rejects
    assert "data.root=None" in agent_run.requeue_argv and "model.patch_size=[8,16]" in agent_run.requeue_argv
    results = agent_run.results
    assert agent_run.second_rc == 0 and results["status"] == "completed", results["reason"]
    assert [row["epoch"] for row in results["history"]] == list(range(EPOCHS))
    assert results["history"][0] == agent_run.first_results["history"][0]  # epoch 0 was not trained again
    assert results["wandb"]["run_id"] == RUN_ID and Path(results["run_dir"]) == agent_run.run_dir.resolve()
    assert results["overrides"] == agent_run.first_results["overrides"]  # the sweep's keys, not the whole config
    assert results["config"]["model"]["patch_size"] == [8, 16] and results["config_hash"] == \
        agent_run.first_results["config_hash"]


@pytest.mark.slow
def test_both_offline_halves_carry_the_run_id_hold_every_epoch_and_the_first_is_marked_preempting(agent_run):
    groups = by_run(find_offline_runs([agent_run.base / "multirun"]))
    assert list(groups) == [RUN_ID] and len(groups[RUN_ID]) == 2
    first, second = (read_offline_run(folder) for folder in groups[RUN_ID])
    assert first.run_id == second.run_id == RUN_ID and first.sweep_id == second.sweep_id == SWEEP_ID
    assert first.preempting and not second.preempting and second.exit_code == 0
    assert sorted(set(first.epochs) | set(second.epochs)) == list(range(EPOCHS))
    assert second.summary["final/top1"] == agent_run.results["final"]["top1"]


@pytest.mark.slow
def test_wandb_metadata_group_job_type_tags_arch_keys_and_summary(agent_run):
    first, second = (read_offline_run(folder) for folder in by_run(find_offline_runs([agent_run.run_dir]))[RUN_ID])
    results = agent_run.results
    assert second.group == group_name(results["config"]) and second.group.startswith("micro_p8_32-cross-p8/16-w48/96-")
    assert second.job_type == PRESET and PRESET in second.tags
    assert second.config["model.patch_size"] == "[8,16]"  # sweep-locked: the sweep's raw string
    assert {k: second.config[k] for k in arch_keys(results["model"])} == arch_keys(results["model"])
    assert second.config["arch/patch_size"] == "8/16"
    summary = second.summary
    assert summary["provenance/peak_memory_mb"] > 0 and summary["images_per_s"] > 0
    assert 0 <= summary["data_wait_frac"] < 1
    assert summary["fusion_params_m"] == results["fusion_params_m"]
    assert summary["fusion_gmacs"] == results["fusion_gmacs"]
    assert summary["config_hash"] == results["config_hash"]


@pytest.mark.slow
def test_metrics_csv_has_each_logged_step_and_epoch_once_across_the_resume(agent_run):
    with open(agent_run.run_dir / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    steps = [int(row["step"]) for row in rows if row["kind"] == "step"]
    assert steps == list(range(LOG_EVERY, EPOCHS * STEPS_PER_EPOCH + 1, LOG_EVERY))
    epochs = [row for row in rows if row["kind"] == "epoch"]
    assert [float(row["val/top1"]) for row in epochs] == [row["top1"] for row in agent_run.results["history"]]
    assert [float(row["val/top1_branch1"]) for row in epochs] == \
        [row["top1_branch"][1] for row in agent_run.results["history"]]


@pytest.mark.slow
def test_provenance_records_the_device_threads_and_code(agent_run):
    provenance = agent_run.results["provenance"]
    assert tuple(provenance) == PROVENANCE_KEYS
    assert provenance["threads"] == 1 and provenance["device"] and provenance["peak_memory_mb"] > 0
    assert len(provenance["git_sha"]) == 40 and isinstance(provenance["git_dirty"], bool)


class OfflineApiRun(ApiRun):
    """wandb's API ``Run``, less the one server question older releases ask while loading given attrs."""

    def _server_provides_internal_id_for_project(self) -> bool:
        return False


def api_run(offline_halves, run_id=RUN_ID, sweep=SWEEP_ID, seed=None, top1=None) -> ApiRun:
    """A ``wandb.apis.public.Run`` as the API returns it, from what the offline files hold (config as W&B
    stores it, ``{"value": ...}`` per key; the summary of the last half); ``history`` from the files too."""
    config = {key: {"value": value} for half in offline_halves for key, value in half.config.items()}
    summary = {**offline_halves[-1].summary}
    if seed is not None:
        config["seed"] = {"value": seed}
    if top1 is not None:
        summary["final/top1"] = top1
    attrs = {"state": "finished", "config": json.dumps(config), "summaryMetrics": json.dumps(summary),
             "group": offline_halves[-1].group, "tags": offline_halves[-1].tags, "sweepName": sweep,
             "displayName": run_id, "name": run_id}
    lazy = {"lazy": False} if "lazy" in inspect.signature(ApiRun.__init__).parameters else {}  # newer wandb
    run = OfflineApiRun(None, "entity", "fusionvit", run_id, attrs=attrs, include_sweeps=False, **lazy)
    rows = [row for half in offline_halves for row in half.history if "epoch" in row]
    run.history = lambda keys=None, pandas=False: rows
    return run


@pytest.mark.slow
def test_a_wandb_api_run_gives_the_row_of_its_local_results(agent_run):
    halves = [read_offline_run(f) for f in by_run(find_offline_runs([agent_run.run_dir]))[RUN_ID]]
    from_wandb = wandb_run_to_row(api_run(halves))
    from_file = load_runs([agent_run.run_dir]).runs.iloc[0].to_dict()
    for column in ("status", "seed", "config_hash", "fusion", "model", "data", "arch", "patch_size", "embed_dim",
                   "depth", "K", "img_size", "class_token", "model.patch_size", "top1", "top5", "best_top1",
                   "params_m", "gmacs", "fusion_params_m", "fusion_gmacs", "images_per_s", "data_wait_frac",
                   "wall_time_s",
                   "top1_branch0", "top1_branch1", "epochs", "device", "threads"):
        assert from_wandb[column] == pytest.approx(from_file[column]) if isinstance(from_file[column], float) \
            else from_wandb[column] == from_file[column], column
    assert [row["top1"] for row in from_wandb["history"]] == [row["top1"] for row in from_file["history"]]


@pytest.mark.slow
def test_collate_wandb_filters_dedupes_and_gives_the_local_table(agent_run, tmp_path, capsys):
    """Four runs (two seeds x two patch sizes) made from the real one, both as results.json folders and as
    W&B API runs, plus a copy of one W&B run and runs of another sweep: the same table."""
    halves = [read_offline_run(f) for f in by_run(find_offline_runs([agent_run.run_dir]))[RUN_ID]]
    wandb_runs, local = [], tmp_path / "local"
    for index, (patch, seed, top1) in enumerate([("[4,8]", 0, 70.0), ("[4,8]", 1, 72.0), ("[2,8]", 0, 60.0),
                                                  ("[2,8]", 1, 61.0)]):
        results = json.loads(json.dumps(agent_run.results))
        results["config"]["model"]["patch_size"] = results["model"]["patch_size"] = yaml.safe_load(patch)
        results.update(seed=seed, config_hash=f"hash-{patch}-{seed}")
        results["config"]["seed"] = seed
        results["final"]["top1"] = top1
        results["overrides"] = [f"model.patch_size={patch}", f"seed={seed}"]
        (local / str(index)).mkdir(parents=True)
        (local / str(index) / "results.json").write_text(json.dumps(results))
        run = api_run(halves, run_id=f"r{index}", seed=seed, top1=top1)
        run._attrs["config"]["model.patch_size"] = patch
        run._attrs["summaryMetrics"].update(config_hash=results["config_hash"], overrides=results["overrides"])
        wandb_runs.append(run)
    copy = api_run(halves, run_id="r9", seed=1, top1=61.0)  # the same run uploaded twice
    copy._attrs["config"]["model.patch_size"] = "[2,8]"
    copy._attrs["summaryMetrics"].update(config_hash="hash-[2,8]-1", overrides=wandb_runs[3].summary["overrides"])
    other_sweep = api_run(halves, run_id="x1", sweep="othersweep", top1=10.0)
    api = SimpleNamespace(runs=lambda path, filters=None: [*wandb_runs, copy, other_sweep])
    warnings = []
    collection = load_wandb_runs("entity/fusionvit", api=api, warn=warnings.append, where=WandbFilter(sweep=SWEEP_ID))
    assert len(collection.runs) == 4 and any("the same run" in w and "r9" in w for w in warnings)
    assert sorted(collection.runs["patch_size"]) == ["2/8", "2/8", "4/8", "4/8"]
    assert collate_main([str(local), "--out", str(tmp_path / "from_files"), "--no-plots"]) == 0
    import analysis.runs.wandb_api as loading
    original = loading.wandb_api
    loading.wandb_api = lambda: api
    try:
        assert collate_main(["--wandb", "entity/fusionvit", "--sweep", SWEEP_ID, "--tag", PRESET,
                             "--out", str(tmp_path / "from_wandb"), "--no-plots"]) == 0
        capsys.readouterr()
        assert collate_main(["--wandb", "entity/fusionvit", "--sweep", "nosuchsweep", "--no-plots",
                             "--out", str(tmp_path / "none")]) == 1
        assert "no runs found in W&B project entity/fusionvit (sweep nosuchsweep)" in capsys.readouterr().err
    finally:
        loading.wandb_api = original
    tables = [(tmp_path / name / "ablation.md").read_text() for name in ("from_files", "from_wandb")]
    assert tables[0] == tables[1] and "4/8" in tables[0] and "2/8" in tables[0]


@pytest.mark.slow
def test_sync_lists_the_halves_in_order_and_hands_them_to_wandb_sync(agent_run, capsys):
    sweep_folder = agent_run.base / "multirun" / "wandb" / SWEEP_ID
    assert sync_main([str(sweep_folder), "--dry-run", "--", "-p", "fusionvit"]) == 0
    out = capsys.readouterr().out
    halves = [str(folder) for folder in by_run(find_offline_runs([sweep_folder]))[RUN_ID]]
    assert f"run {RUN_ID}: 2 part(s), epochs 0-{EPOCHS - 1}: {halves[0]}, {halves[1]}" in out
    assert out.splitlines()[-1].endswith(f"wandb sync -p fusionvit {halves[0]} {halves[1]}")


@pytest.mark.slow
def test_wandb_sync_itself_finds_both_halves(agent_run):
    """wandb's own finder (``wandb sync --dry-run``, where the installed wandb has it) lists both parts."""
    help_text = subprocess.run([*wandb_command(), "sync", "--help"], capture_output=True, text=True, timeout=60).stdout
    if "--dry-run" not in help_text:
        pytest.skip(f"wandb {wandb.__version__}'s sync has no --dry-run")
    halves = [str(folder) for folder in by_run(find_offline_runs([agent_run.run_dir]))[RUN_ID]]
    done = subprocess.run([*wandb_command(), "sync", "--dry-run", *halves], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "WANDB_MODE": "offline"})
    assert done.returncode == 0 and "Would sync 2 run(s)" in done.stdout + done.stderr


def test_sync_of_a_folder_without_offline_runs_names_it_and_exits_1(tmp_path, capsys):
    assert sync_main([str(tmp_path)]) == 1
    assert f"no W&B offline runs (offline-run-*/run-*.wandb) under {tmp_path}" in capsys.readouterr().err


@pytest.mark.parametrize("preset", ["fusion_ablation_cpu", "patch_size_ablation_cpu", "branch_depth_ablation"])
def test_a_requeued_runs_whole_config_composes_to_the_config_of_its_first_launch(preset):
    """Every key W&B passes back (the flattened config, Hydra's choices, arch/... keys and _wandb, written with
    Python's str as wandb's agent writes them) parses and gives the first launch's config."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    parameters = yaml.safe_load((ROOT / "experiments" / f"{preset}.yaml").read_text())["parameters"]
    first = {key: {"value": spec["values"][-1] if "values" in spec else spec["value"]}
             for key, spec in parameters.items()}
    env = {"WANDB_SWEEP_ID": "s", "WANDB_RUN_ID": "r"}
    first_argv = agent_argv(["src.run", *create_sweep_command_args({"args": first})["args_no_hyphens"]], env)
    config = compose_config(first_argv[1:-1])
    from omegaconf import OmegaConf
    resolved = OmegaConf.to_container(config, resolve=True)
    logged = {**flatten(resolved), "model": config.model.name, "fusion": config.fusion.name, "data": config.data.name,
              "arch": "none", "recipe": "digits_cpu" if preset.endswith("_cpu") else "crossvit_imagenet",
              "arch/patch_size": "4/8", "_wandb": {"cli_version": wandb.__version__, "start_time": 1.5}}
    requeued = {key: {"value": value} for key, value in logged.items()}
    argv = agent_argv(["src.run", *create_sweep_command_args({"args": requeued})["args_no_hyphens"]], env)
    assert argv[-1] == "hydra.run.dir=multirun/wandb/s/r" and not any(a.startswith(("_wandb", "arch/")) for a in argv)
    assert OmegaConf.to_container(compose_config(argv[1:-1]), resolve=True) == resolved


def test_an_agent_launch_with_an_unknown_key_gets_hydras_error_naming_it(tmp_path, monkeypatch):
    from hydra.errors import ConfigCompositionException

    monkeypatch.chdir(tmp_path)
    argv = agent_argv(["src.run", "fusion=none", "model.patchsize=[4,8]"], {"WANDB_SWEEP_ID": "s", "WANDB_RUN_ID": "r"})
    with pytest.raises(ConfigCompositionException, match="model.patchsize"):
        compose_config(argv[1:-1])
    assert list(tmp_path.iterdir()) == []
