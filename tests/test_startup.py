"""What a new user meets first, answered before the training stack loads: ``--help`` shows the config groups and
the three ways to run, a config error names the problem, and neither imports torch, timm, sklearn, wandb or
pandas (the times themselves are the benchmark's: ``python -m src.bench --parts startup``)."""
import subprocess
import sys

import pytest

from src.variant_table import VARIANTS

from conftest import CONF, ROOT, cli_env, run_module

HEAVY = ("torch", "timm", "torchvision", "sklearn", "wandb", "pandas")
# ``python -m src.run ARGS`` in this process, then the heavy packages it loaded, whether it exits or not.
PROBE = f"""
import runpy, sys
sys.argv = ["src.run", *sys.argv[1:]]
try:
    runpy.run_module("src.run", run_name="__main__", alter_sys=True)
finally:
    print("loaded:", sorted(name for name in {HEAVY!r} if name in sys.modules), file=sys.stderr)
"""
RUN_COMMANDS = [
    "python -m src.run fusion=pairwise seed=1",
    "python -m src.run -m fusion=cross,all_attn,pairwise,cls_token seed=0,1,2",
    "python -m src.run -m +experiment=fusion_ablation_cpu",
    "python -m analysis.collate multirun/fusion_ablation_cpu",
    "python -m src.sweeps",
    "wandb sweep --project fusionvit experiments/fusion_ablation_cpu.yaml",
    "wandb agent ENTITY/fusionvit/SWEEP_ID",
]


def app_groups() -> dict:
    """Each group under conf/ (Hydra's own aside) with its options; the model options are VARIANTS."""
    groups = {path.name: sorted(option.stem for option in path.glob("*.yaml"))
              for path in CONF.iterdir() if path.is_dir() and path.name not in ("hydra", "tune")}  # tune: search spaces
    return {**groups, "model": sorted(VARIANTS)}


@pytest.mark.slow
def test_help_lists_every_config_group_with_its_options_and_the_three_ways_to_run():
    done = run_module("src.run", "--help")
    assert done.returncode == 0, done.stderr[-3000:]
    listed = dict(line.split(": ", 1) for line in done.stdout.splitlines() if line.split(":")[0] in app_groups())
    assert listed == {group: ", ".join(options) for group, options in app_groups().items()}
    missing = [command for command in RUN_COMMANDS if command not in done.stdout]
    assert missing == [], f"--help does not show {missing}"
    assert len(done.stdout.splitlines()) < 40, "--help should fit on a screen"
    for launcher in ("parallel", "local", "slurm"):
        assert f"; {launcher} " in done.stdout  # the launchers of -m, make run's parallel among them
    assert "train.device=auto|cpu|cuda|cuda:N" in done.stdout and "model.pretrained=" in done.stdout
    assert "cpu/digits" not in done.stdout and "experiment/cpu" not in done.stdout  # overlays are no choice


@pytest.mark.slow
@pytest.mark.parametrize("override,message", [
    ("model=nope", "Could not find 'model/nope'"),
    ("train.epochs=abc", "train.epochs takes an integer"),
    ("train.epochz=3", "train.epochz is not a config key; did you mean train.epochs?"),
])
def test_a_config_error_exits_2_with_one_line(override, message):
    done = run_module("src.run", override)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job"], ["train.epochz=3"]], ids=" ".join)
def test_help_and_config_errors_never_load_the_training_stack(args):
    done = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=ROOT, env=cli_env(), capture_output=True,
                          text=True, timeout=300)
    loaded = done.stderr.splitlines()[-1]
    assert loaded == "loaded: []", f"{' '.join(args)} {loaded}: import them inside src/run.py's main()"
