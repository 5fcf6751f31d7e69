"""Every bad input a researcher plausibly types fails before work: one line naming the key and the fix, exit status
2 for a command line that does not compose and 1 for a value or file the run cannot use, no traceback (unless
``HYDRA_FULL_ERROR=1``), and for a config error nothing built and no ``results.json``. Most cases run ``src.run``'s
command line in this process; a few run the real CLI to pin each route (docs/training.md#bad-input has the table)."""
import io
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

import src.run

from conftest import CONF, ROOT, cli_env, command, run_module

CUDA = torch.cuda.is_available()


class Boom:
    """A pickled object of a class: what loading a file of pickled code would run."""

    def __reduce__(self):
        return (print, ("this ran while loading",))


def image(path: Path, value: int = 100, size: int = 20) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)


def image_root(tmp_path: Path, classes=("cat", "dog"), per_class: int = 4) -> Path:
    root = tmp_path / "images"
    for split in ("train", "val"):
        for label in classes:
            for index in range(per_class):
                image(root / split / label / f"{index}.png", 30 * index % 256)
    return root


def make_input(tmp_path: Path, kind: str) -> str:
    """A file or folder for the cases that point at one; returns its path."""
    if kind == "bytes":
        path = tmp_path / "random.pt"
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "code":
        path = tmp_path / "code.pt"
        torch.save({"model": Boom()}, path)
    elif kind == "pickle":
        path = tmp_path / "plain.pkl"
        path.write_bytes(pickle.dumps({"model": Boom()}))
    elif kind == "folder":
        path = tmp_path / "a_folder"
        path.mkdir()
    elif kind == "file":
        path = tmp_path / "a_file"
        path.write_text("not a folder")
    elif kind == "no_classes":
        path = tmp_path / "images"
        for split in ("train", "val"):
            (path / split).mkdir(parents=True)
    elif kind == "empty_classes":
        path = image_root(tmp_path)
        for label in ("bird", "fish"):
            (path / "train" / label).mkdir()
    elif kind == "not_images":
        path = image_root(tmp_path)
        (path / "train" / "cat" / "page.jpg").write_text("<html>a web page saved as .jpg</html>")
        (path / "val" / "dog" / "empty.png").write_bytes(b"")
    elif kind == "class_mismatch":
        path = image_root(tmp_path)
        image(path / "val" / "fox" / "0.png")
    else:
        raise ValueError(kind)
    return str(path)


def run_in_process(monkeypatch, capsys, tmp_path: Path, *args: str):
    """``python -m src.run ARGS`` in this process: (exit status, stdout and stderr together)."""
    run_dir = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["src/run.py", f"--config-path={CONF}", "logger=none",
                                      f"hydra.run.dir={run_dir}", *args])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    GlobalHydra.instance().clear()
    try:
        with pytest.raises(SystemExit) as exited:
            src.run.cli()
    finally:
        GlobalHydra.instance().clear()
    captured = capsys.readouterr()
    return exited.value.code, captured.out + captured.err


def assert_one_line(output: str, message: str) -> None:
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if "error: " in line]
    assert len(errors) == 1, output
    assert __import__("re").search(message, errors[0]), errors[0]


USAGE = [  # (override, what the one line says): exit 2, before Hydra composes
    ("train.epoch=3", r"train.epoch is not a config key; did you mean train.epochs\?"),
    ("+train.epoch=3", r"train.epoch is not a config key; did you mean train.epochs\?"),
    ("seeds=1", r"seeds is not a config key; did you mean seed\?"),
    ("data.nme=digits", r"did you mean data.name\?"),
    ("fusion.layer=2", r"did you mean fusion.layers\?"),
    ("model.patch_sizes=[4,8]", r"did you mean model.patch_size\?"),
    ("optim.learning_rate=0.1", r"optim.learning_rate is not a config key"),
    ("fusion=crosss", r"Could not find 'fusion/crosss': fusion= takes one of all_attn, .*; did you mean cross\?"),
    ("model=nope", r"Could not find 'model/nope': model= takes one of .*fusionvit_micro_16"),
    ("data=imagenett", r"Could not find 'data/imagenett'.*did you mean imagenet\?"),
    ("optim=adam", r"Could not find 'optim/adam'.*did you mean adamw\?"),
    ("+experiment=smok", r"Could not find 'experiment/smok'.*did you mean smoke\?"),
    ("train.epochs=abc", r"train.epochs=abc: train.epochs takes an integer, e.g. train.epochs=300"),
    ("train.batch_size=1.5", r"train.batch_size takes an integer"),
    ("optim.lr=fast", r"optim.lr takes a number"),
    ("train.compile=maybe", r"train.compile takes true or false, e.g. train.compile=false"),
    ("model.patch_size=4", r"model.patch_size takes a list"),
    ("train.epochs=null", r"train.epochs takes a value \(it cannot be null\)"),
    ("train.epochs=[1,2]", r"train.epochs takes one int value, not a list"),
    ("train.epochs=[1,2", r"train.epochs=\[1,2"),
    ("experiment=smoke", r"experiment=smoke: experiment is a preset group, added to the defaults: write "
                         r"\+experiment=smoke"),
    ("fusion=cross,none", r"fusion=cross,none: a comma list is a sweep, which runs under -m: python -m src.run -m "
                          r"fusion=cross,none"),
    ("hydra/launcher=paralel", r"Could not find 'hydra/launcher/paralel': hydra/launcher= takes one of local, "
                               r"parallel, slurm .*; did you mean parallel\?"),
    ("hydra.launcher.n_jobs=2", r"Could not override 'hydra.launcher.n_jobs': Key 'n_jobs' not in 'BasicLauncherConf'"),
]

VALUES = [  # (override, what the one line says): exit 1, before anything is built or written
    ("train.epochs=0", r"train.epochs=0: must be >= 1"),
    ("train.epochs=-3", r"train.epochs=-3: must be >= 1"),
    ("train.batch_size=0", r"train.batch_size=0: must be >= 1, e.g. train.batch_size=64"),
    ("train.batch_size=-1", r"train.batch_size=-1: must be >= 1"),
    ("train.eval_batch_size=0", r"train.eval_batch_size=0: must be >= 1, or null"),
    ("train.threads=0", r"train.threads=0: must be >= 1 torch threads, or null"),
    ("train.ckpt_every_steps=-1", r"train.ckpt_every_steps=-1: must be >= 0"),
    ("train.grad_accum_steps=0", r"train.grad_accum_steps=0: must be >= 1"),
    ("train.ema_decay=1.5", r"train.ema_decay=1.5: must be in \[0, 1\)"),
    ("train.device=gpu", r"train.device='gpu' is not a device: pick auto .*, cpu, cuda or cuda:N"),
    ("train.device=cuda:99", r"train.device=cuda:99 but .*(no CUDA device is visible|CUDA device\(s\) are visible)"),
    ("train.amp=fp32", r"train.amp='fp32': pick auto, none, bf16 or fp16"),
    ("train.progress=False", r"train.progress='False': pick auto .*, bar or log"),
    ("train.progress=quiet", r"train.progress='quiet': pick auto"),
    ("train.on_busy=later", r"train.on_busy='later': pick skip .* or wait"),
    ("seed=-1", r"seed=-1: pick an integer from 0 to 2\*\*32 - 1"),
    ("optim.lr=-0.1", r"optim.lr=-0.1: must be a finite number > 0, e.g. optim.lr=1e-3"),
    ("optim.lr=0", r"optim.lr=0(\.0)?: must be a finite number > 0"),
    ("optim.lr=nan", r"optim.lr=nan: must be a finite number > 0"),
    ("optim.lr=inf", r"optim.lr=inf: must be a finite number > 0"),
    ("optim.base_lr=0", r"optim.base_lr=0(\.0)?: must be a finite number > 0"),
    ("optim.weight_decay=-0.01", r"optim.weight_decay=-0.01: must be a finite number >= 0"),
    ("optim.clip_grad=0", r"optim.clip_grad=0(\.0)?: must be a finite norm > 0, or null"),
    ("optim.name=adamx", r"optim.name='adamx' is not a timm optimizer: .*did you mean"),
    ("sched.name=cosin", r"sched.name='cosin': pick one of cosine"),
    ("sched.warmup_epochs=-1", r"sched.warmup_epochs=-1: must be >= 0"),
    ("sched.min_lr=-1", r"sched.min_lr=-1(\.0)?: must be a finite number >= 0"),
    ("sched.cooldown_epochs=-1", r"sched.cooldown_epochs=-1: must be >= 0"),
    ("data.limit_train=0", r"data.limit_train=0: must be >= 1 samples, or null"),
    ("data.limit_train=-5", r"data.limit_train=-5: must be >= 1 samples"),
    ("data.limit_val=0", r"data.limit_val=0: must be >= 1 samples"),
    ("data.num_workers=-1", r"data.num_workers=-1: use 0 \(load in the training process\)"),
    ("data.num_classes=0", r"data.num_classes=0: must be >= 2 classes, or null \(the data's own count\)"),
    ("data.num_classes=1", r"data.num_classes=1: must be >= 2 classes"),
    ("data.num_classes=7", r"data.num_classes=7 but digits has 10 classes: set data.num_classes=10, or null"),
    ("data.val_fraction=1.5", r"data.val_fraction=1.5: must be in \(0, 1\)"),
    ("data.smoothing=1.0", r"data.smoothing=1.0: must be in \[0, 1\)"),
    ("data.mixup=-0.5", r"data.mixup=-0.5: must be >= 0"),
    ("data.reprob=2", r"data.reprob=2(\.0)?: must be a probability in \[0, 1\]"),
    ("data.scale=[0.9,0.1]", r"data.scale=\[0.9, 0.1\]: must be \[low, high\]"),
    ("data.interpolation=cubic", r"data.interpolation='cubic': pick bicubic"),
    ("data.image_size=64", r"data.image_size=64 but fusionvit_micro_16 takes 16x16 images"),
    ("data.name=mnist", r"unknown data.name='mnist': pick one of digits"),
    ("model.drop_path_rate=1.5", r"model.drop_path_rate=1.5: must be in \[0, 1\)"),
    # the model's own checks, run on the meta device before anything is written
    ("model.patch_size=[12,8]", r"patch size 12 does not divide image size 16 of branch 0: pick a patch size from"),
    ("model.multi_conv=true model.patch_size=[2,8]", r"the 3-conv \(dagger\) patch embedding needs a patch size that "
                                                     r"is a multiple of 4 .*not 2: set multi_conv=false"),
    ("model.name=nope", r"unknown model.name='nope': pick one of"),
    ("model.pretrained=required", r"model.pretrained is required .*model.pretrained=PATH"),
    ("fusion.name=nope", r"unknown fusion.name='nope': pick one of"),
    ("fusion.layers=0", r"fusion.layers=0: must be >= 1"),
    ("logger.name=mlflow", r"logger.name='mlflow': pick wandb, tensorboard or none"),
    ("logger.mode=cloud", r"logger.mode='cloud': pick auto, online, offline or disabled"),
    ("data=imagefolder", r"data.root is not set for imagefolder: pass data.root="),
    ("data=cifar10", r"cifar10 not found: looked for .*data.download=true"),
    ("data=imagenet data.root=/no/such/dir", r"imagenet not found: looked for /no/such/dir/train"),
]
if not CUDA:
    VALUES += [("train.device=cuda", r"train.device=cuda but no CUDA device is visible: use train.device=auto or cpu"),
               ("train.amp=bf16", r"train.amp=bf16 needs CUDA but this run is on cpu: use train.amp=none or auto")]

FILES = [  # (override with {KIND} for a file or folder made here, kind, what the one line says): exit 1
    ("train.resume=/no/such/last.pt", None,
     r"train.resume=/no/such/last.pt: checkpoint /no/such/last.pt does not exist; give train.resume=PATH"),
    ("train.resume={}", "folder", r"train.resume=.*a_folder: checkpoint .*a_folder is a folder"),
    ("train.resume={}", "bytes", r"random.pt is not a torch.save file \(corrupt, truncated or another kind of file\); "
                                 r"it is not a checkpoint of this harness"),
    ("train.resume={}", "code", r"code.pt holds pickled code \(builtins.print\), which loading would run: refused"),
    ("model.pretrained=/no/such.pth", None, r"model.pretrained=/no/such.pth: no such file; give model.pretrained=PATH"),
    ("model.pretrained={}", "bytes", r"random.pt is not a torch.save file .*; give model.pretrained=PATH"),
    ("model.pretrained={}", "code", r"code.pt holds pickled code .*which loading would run: refused"),
    ("model.pretrained={}", "pickle", r"plain.pkl is not a torch.save file \(a plain pickle, which loading would run"),
    ("hydra.run.dir=/proc/x", None, r"hydra.run.dir=/proc/x cannot be written: /proc is not writable"),
    ("hydra.run.dir={}/run", "file", r"cannot be written: Not a directory: .*a_file is a file, not a folder"),
    ("data=imagefolder data.root={}", "no_classes", r"imagefolder: .*train holds no class folders"),
    ("data=imagefolder data.root={}", "empty_classes",
     r"imagefolder: 2 of 4 class folders under .*train hold no images \(.*bird, .*fish\): add images"),
    ("data=imagefolder data.root={}", "not_images",
     r"imagefolder: 1 file\(s\) under .*train are not images .*page.jpg. Delete or replace them"),
    ("data=imagefolder data.root={}", "class_mismatch",
     r"train/ has 2 classes but val/ has 3; both must hold the same class folders"),
]


@pytest.fixture
def nothing_built(monkeypatch):
    """A config error must fail before the training code is reached."""
    def reached(*args, **kwargs):
        raise AssertionError("the training code was reached")

    monkeypatch.setattr("src.train.loop.train", reached)
    monkeypatch.setattr("src.train.loop.build_run", reached)


@pytest.mark.parametrize("override,message", USAGE, ids=[case[0] for case in USAGE])
def test_a_command_line_that_does_not_compose_exits_2_with_one_line(monkeypatch, capsys, tmp_path, nothing_built,
                                                                     override, message):
    code, output = run_in_process(monkeypatch, capsys, tmp_path, override)
    assert code == 2, output
    assert_one_line(output, message)
    assert not (tmp_path / "run").exists()  # Hydra never started


@pytest.mark.parametrize("override,message", VALUES, ids=[case[0] for case in VALUES])
def test_a_bad_value_exits_1_with_one_line_before_anything_is_built(monkeypatch, capsys, tmp_path, nothing_built,
                                                                     override, message):
    code, output = run_in_process(monkeypatch, capsys, tmp_path, *override.split())
    assert code == 1, output
    assert_one_line(output, message)
    assert not (tmp_path / "run" / "results.json").exists()


@pytest.mark.parametrize("override,kind,message", FILES, ids=[f"{case[0].split('=')[0]}-{case[1]}" for case in FILES])
def test_a_bad_file_or_folder_exits_1_with_one_line_before_anything_is_built(monkeypatch, capsys, tmp_path,
                                                                               nothing_built, override, kind, message):
    if kind is not None:
        override = override.format(make_input(tmp_path, kind))
    code, output = run_in_process(monkeypatch, capsys, tmp_path, *override.split())
    assert code == 1, output
    assert_one_line(output, message)
    assert "weights_only" not in output  # torch's own advice would run the file's code
    assert not (tmp_path / "run" / "results.json").exists() and not list(tmp_path.rglob("last.pt"))


@pytest.mark.parametrize("override,message", [
    ("data.mixup=0.8 train.batch_size=7", r"mixup/cutmix need an even batch, got train.batch_size=7"),
])
def test_a_check_of_the_builders_prints_one_line_and_records_the_failure(monkeypatch, capsys, tmp_path, override,
                                                                          message):
    code, output = run_in_process(monkeypatch, capsys, tmp_path, "train.epochs=1", *override.split())
    assert code == 1
    assert_one_line(output, message)
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["status"] == "failed" and record["history"] == []


def test_a_bad_job_of_a_sweep_records_failed_and_the_sweep_goes_on(monkeypatch, capsys, tmp_path, nothing_built):
    monkeypatch.setattr(sys, "argv", ["src/run.py", f"--config-path={CONF}", "-m", "logger=none", "optim.lr=-0.1,nan",
                                      f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    GlobalHydra.instance().clear()
    try:
        with pytest.raises(SystemExit) as exited:  # after every job: a sweep's bad jobs do not end it
            src.run.cli()
    finally:
        GlobalHydra.instance().clear()
    output = capsys.readouterr()
    assert exited.value.code == 1 and "sweep FAILED: 2 failed of 2 jobs" in output.out
    assert "Traceback" not in output.out + output.err
    reasons = [json.loads((tmp_path / "sweep" / job / "results.json").read_text()) for job in "01"]
    assert [r["status"] for r in reasons] == ["failed", "failed"]
    assert "optim.lr=-0.1: must be" in reasons[0]["reason"] and "optim.lr=nan" in reasons[1]["reason"]


def test_group_overrides_hydra_keys_sweeps_and_added_keys_pass_the_command_line_check():
    from src.preflight import check_command_line

    check_command_line(["-m", "fusion=none,cross", "model=fusionvit_micro_p8_32", "+experiment=smoke", "seed=0,1",
                        "+fusion.options.stacking=released", "++train.epochs=3", "~data.limit_val", "arch=no_cls",
                        "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "model.depth=[[1,1,0]]",
                        "data.root=null", "train.compile=false", "optim.lr=1e-3", "+experiment=cpu/proxy",
                        "seed=range(3)", "optim.lr=interval(0,1)", "--cfg", "job"])


def test_the_header_check_names_a_file_whose_body_is_truncated_when_it_is_loaded(tmp_path):
    from src.data.folders import UnreadableImage, check_image_folders, image_folders

    root = image_root(tmp_path)
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buffer, "JPEG")
    bad = root / "train" / "cat" / "truncated.jpg"
    bad.write_bytes(buffer.getvalue()[:400])  # a JPEG header, most of its body cut off
    check_image_folders("imagefolder", str(root))  # the header looks like an image
    train, _ = image_folders("imagefolder", str(root), None, None)
    with pytest.raises(UnreadableImage, match=rf"image {bad} cannot be read .*delete or replace it"):
        train[[train.filename(index, absolute=True) for index in range(len(train))].index(str(bad))]


# -- the real command line: one case a route ---------------------------------------------------------------
def assert_cli_one_line(done: subprocess.CompletedProcess, code: int, message: str) -> None:
    assert done.returncode == code, done.stdout[-3000:] + done.stderr[-3000:]
    assert_one_line(done.stdout + done.stderr, message)


@pytest.mark.slow
def test_cli_routes_usage_value_folder_and_checkpoint_errors(tmp_path):
    assert_cli_one_line(run_module("src.run", "train.epoch=3"), 2, r"did you mean train.epochs\?")
    run_dir = f"hydra.run.dir={tmp_path / 'run'}"
    assert_cli_one_line(run_module("src.run", "logger=none", run_dir, "optim.lr=-0.1"), 1, r"optim.lr=-0.1: must be")
    root = make_input(tmp_path, "empty_classes")
    assert_cli_one_line(run_module("src.run", "logger=none", run_dir, "data=imagefolder", f"data.root={root}"), 1,
                        r"2 of 4 class folders under .* hold no images")
    resume = make_input(tmp_path, "bytes")
    assert_cli_one_line(run_module("src.run", "logger=none", run_dir, f"train.resume={resume}"), 1,
                        r"is not a torch.save file")
    assert not (tmp_path / "run" / "results.json").exists()


@pytest.mark.slow
def test_cli_shows_the_traceback_with_hydra_full_error(tmp_path):
    def run(*args):
        return subprocess.run(command("src.run", *args), cwd=ROOT, env={**cli_env(), "HYDRA_FULL_ERROR": "1"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)

    usage = run("train.epoch=3")
    assert usage.returncode == 2 and "Traceback" in usage.stdout and "did you mean train.epochs?" in usage.stdout
    value = run("logger=none", f"hydra.run.dir={tmp_path}", "optim.lr=nan")
    assert value.returncode == 1 and "Traceback" in value.stdout and "optim.lr=nan: must be" in value.stdout


@pytest.mark.slow
def test_cli_names_a_corrupt_jpeg_that_fails_mid_epoch_in_a_loader_worker(tmp_path):
    root = image_root(tmp_path, per_class=8)
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buffer, "JPEG")
    bad = root / "train" / "dog" / "truncated.jpg"
    bad.write_bytes(buffer.getvalue()[:400])
    done = run_module("src.run", "logger=none", f"hydra.run.dir={tmp_path / 'run'}", "data=imagefolder",
                      f"data.root={root}", "data.num_workers=1", "train.epochs=1",
                      "train.batch_size=4", "data.mixup=0", "data.cutmix=0")
    assert_cli_one_line(done, 1, rf"image {bad} cannot be read .*delete or replace it")
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["status"] == "failed" and str(bad) in record["reason"]
