"""The one-shot GPU check (``python -m src.bench.gpu_check``), without a GPU: it refuses on a machine without CUDA;
its plan writes the JPEGs first and gives each step its own cap; a step that fails, aborts or outruns its cap is
recorded and the next one runs; the report is rewritten around every step and is all that goes to the report
folder; the device files pin what the GPU image lacks; and, slow, its steps run end to end at toy sizes with only
the packages the GPU image has plus the carried wheels."""
import importlib.metadata
import json
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from test_bench import markdown_rows

from src.bench import gpu_check, gpu_report
from src.bench.gpu_plan import CAPS_S, FULL, STEPS, TINY, Plan, Step, plan_steps

from conftest import ROOT

# What the GPU machines' image holds (device/README.md), with the dependencies each declares.
IMAGE_PACKAGES = ("torch", "torchvision", "timm", "pandas", "matplotlib", "statsmodels", "tqdm", "pillow",
                  "scikit-learn", "pip")


def python_step(name: str, code: str, **options) -> Step:
    return Step(name, [sys.executable, "-c", code], CAPS_S[name], **options)


def run_fake_plan(monkeypatch, tmp_path, steps, *argv) -> dict:
    """``gpu_check.main`` on the CPU with ``steps`` in place of the real ones; the report it leaves."""
    monkeypatch.setattr(gpu_check, "plan_steps", lambda plan: [
        Step(step.name, step.command, plan.caps[step.name], step.env, step.read_figures, step.torch_logs,
             step.takes_the_rest)
        for step in steps])
    gpu_check.main(["--device", "cpu", "--tiny", "--out", str(tmp_path / "out"), "--report",
                    str(tmp_path / "report"), *argv])
    return json.loads((tmp_path / "report" / gpu_report.JSON_NAME).read_text())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the refusal is for one without")
def test_without_cuda_the_check_refuses_and_says_how_to_run_its_steps_on_the_cpu(tmp_path, capsys):
    assert gpu_check.main(["--out", str(tmp_path / "out"), "--report", str(tmp_path / "report")]) == 2
    assert "no CUDA device here: this check needs a GPU" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written, nothing run


@pytest.mark.parametrize("sizes", [FULL, TINY], ids=["full", "tiny"])
def test_the_plan_writes_the_jpegs_first_and_caps_every_step(tmp_path, sizes):
    steps = plan_steps(Plan(tmp_path, "cuda", sizes, dict(CAPS_S)))
    assert [step.name for step in steps] == list(STEPS) and STEPS[0] == "jpegs"  # the tiny check runs the same
    assert all(0 < step.cap_s == CAPS_S[step.name] for step in steps)
    assert sum(CAPS_S.values()) <= 7 * 60 < gpu_check.BUDGET_S < 9 * 60  # one 9-minute device call holds it
    for step in steps:  # everything a step writes goes under --out
        paths = [arg for arg in step.command if arg.startswith("/") or "=/" in arg][1:]  # past sys.executable
        assert paths and all(str(tmp_path) in path for path in paths), step.name


def test_the_full_plan_measures_what_the_issue_asks_for(tmp_path):
    steps = {step.name: step for step in plan_steps(Plan(tmp_path, "cuda", FULL, dict(CAPS_S)))}
    text = {name: " ".join(step.command) for name, step in steps.items()}
    assert "--train 5120 --val 512 --classes 4 --size 500x375" in text["jpegs"]
    assert "--n 8192" in text["ceiling"]
    for name, compiled in (("models_eager", "off"), ("models_compiled", "on")):
        assert (f"--variants fusionvit_9_240,fusionvit_small_240 --precisions bf16,fp32 --compile {compiled} "
                f"--batch 128") in text[name]
    assert "--row DeiT-S --row CrossViT-S --throughput-dtype fp32,bf16 --throughput-batch 64 " \
           "--throughput-iterations 100" in text["throughput"]
    assert "--loader-existing --loader-pipeline uint8" in text["loader"]
    for name, compiled in (("run_eager", "false"), ("run_compiled", "true")):
        for override in ("data=imagefolder", f"data.root={tmp_path / 'jpegs'}", "model=fusionvit_9_240",
                         "train.amp=bf16", "train.batch_size=128", "train.epochs=2", "logger=none",
                         "train.save_checkpoints=false", f"train.compile={compiled}"):
            assert override in steps[name].command, (name, override)
    assert {name for name, step in steps.items() if step.env} == {"run_compiled", "models_compiled"}
    assert steps["run_compiled"].env == {"TORCH_LOGS": "recompiles,graph_breaks"}  # compiling stays on


def test_a_step_past_its_cap_a_failed_and_an_aborted_one_are_recorded_and_the_next_still_runs(monkeypatch, tmp_path):
    steps = [python_step("jpegs", "print('written')"),
             python_step("ceiling", "import time; time.sleep(30)"),  # cap 0 below: out of time at once
             python_step("models_eager", "import sys; sys.exit('no such model')"),
             python_step("throughput", "import os; os.abort()"),
             python_step("loader", "print('timed')")]
    report = run_fake_plan(monkeypatch, tmp_path, steps, "--cap", "ceiling=0")
    by_step = {step["step"]: step for step in report["steps"]}
    assert [step["step"] for step in report["steps"]] == ["jpegs", "ceiling", "models_eager", "throughput", "loader"]
    timed_out = by_step["ceiling"]
    assert (timed_out["rc"], timed_out["status"], timed_out["cap_s"]) == (124, "timed out", 0)
    assert (by_step["models_eager"]["rc"], by_step["models_eager"]["status"]) == (1, "failed")
    assert "no such model" in by_step["models_eager"]["output_tail"]
    assert by_step["throughput"]["rc"] < 0 and by_step["throughput"]["status"] == "failed"  # killed by SIGABRT
    assert by_step["loader"]["rc"] == 0 and "timed" in by_step["loader"]["output_tail"]
    md = (tmp_path / "report" / gpu_report.MD_NAME).read_text()
    assert ["ceiling", "0", by_step["ceiling"]["status"]] == [markdown_rows(md, "Steps")[1][i] for i in (0, 1, 4)]
    assert "## models_eager: failed (rc 1)" in md and "## ceiling: timed out (rc 124)" in md


def test_a_cap_for_no_such_step_is_refused_before_any_work(tmp_path, capsys):
    assert gpu_check.main(["--device", "cpu", "--tiny", "--out", str(tmp_path / "out"), "--cap", "jpeg=5"]) == 2
    assert "--cap jpeg=5: give NAME=SECONDS with NAME one of jpegs, ceiling" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_report_is_rewritten_before_and_after_every_step(monkeypatch, tmp_path):
    """Step 2 reads the report while it runs: step 1 done, itself running, step 3 pending. A driver killed in step 3
    leaves a report of steps 1 and 2."""
    report_file = tmp_path / "report" / gpu_report.JSON_NAME
    check = (f"import json, sys; steps = json.load(open({str(report_file)!r}))['steps']; "
             f"sys.exit([s['status'] for s in steps] != ['ok', 'running', 'pending'])")
    steps = [python_step("jpegs", "print(1)"), python_step("ceiling", check), python_step("models_eager", "print(3)")]
    assert [s["status"] for s in run_fake_plan(monkeypatch, tmp_path, steps)["steps"]] == ["ok", "ok", "ok"]

    def killed_in_step_3(step, cap_s, log_path):
        if step.name == "models_eager":
            raise KeyboardInterrupt  # what SIGINT does; SIGKILL leaves the same files
        return real_run_step(step, cap_s, log_path)
    real_run_step = gpu_check.run_step
    monkeypatch.setattr(gpu_check, "run_step", killed_in_step_3)
    with pytest.raises(KeyboardInterrupt):
        run_fake_plan(monkeypatch, tmp_path, steps)
    left = json.loads(report_file.read_text())
    assert [s["status"] for s in left["steps"]] == ["ok", "ok", "running"]
    assert (tmp_path / "report" / gpu_report.MD_NAME).is_file()


def test_the_budget_cuts_the_last_steps_caps_and_skips_what_it_cannot_start(monkeypatch, tmp_path):
    steps = [python_step("jpegs", "import time; time.sleep(2)"), python_step("ceiling", "print(2)")]
    report = run_fake_plan(monkeypatch, tmp_path, steps, "--budget-s", "1.5")
    jpegs, ceiling = report["steps"]
    assert jpegs["status"] == "timed out" and jpegs["cap_s"] <= 1.5  # its cap of 20 s cut to the budget's 1.5
    assert ceiling["status"] == "not run" and "budget is spent" in ceiling["reason"]


def test_the_last_step_takes_what_the_others_left_of_the_budget(monkeypatch, tmp_path):
    steps = [python_step("jpegs", "print(1)"), python_step("models_compiled", "print(2)", takes_the_rest=True)]
    report = run_fake_plan(monkeypatch, tmp_path, steps, "--budget-s", "400")
    assert CAPS_S["models_compiled"] < report["steps"][1]["cap_s"] <= 400 - report["steps"][0]["wall_s"]
    real = plan_steps(Plan(tmp_path, "cuda", FULL, dict(CAPS_S)))
    assert [step.name for step in real if step.takes_the_rest] == ["models_compiled"] == [real[-1].name]
    given = plan_steps(Plan(tmp_path, "cuda", FULL, gpu_check.step_caps(["models_compiled=60"])))
    assert not given[-1].takes_the_rest and given[-1].cap_s == 60  # a cap given on the command line holds


def test_recompiles_and_graph_breaks_are_counted_from_torch_logs(monkeypatch, tmp_path):
    """Lines as torch 2.14 prints them under TORCH_LOGS=recompiles,graph_breaks (captured from a real run)."""
    prefix = "V1206 07:42:59.016000 29582 torch/_dynamo/"
    lines = [f"{prefix}symbolic_convert.py:5368] [0/0] [__graph_breaks] Graph break in user code at /tmp/tl.py:4",
             f"{prefix}symbolic_convert.py:5368] [0/0] [__graph_breaks] Graph Break Reason: Encountered graph break",
             f"{prefix}guards.py:5621] [0/1] [__recompiles] Recompiling function f in /tmp/tl.py:2",
             f"{prefix}guards.py:5621] [0/1] [__recompiles]     - 0/0: tensor 'x' size mismatch at index 0",
             f"{prefix}symbolic_convert.py:5375] [0/1] [__graph_breaks] Graph break (user stack suppressed due to "
             "duplicate graph break) in user code at /tmp/tl.py:4", "epoch 1/2: train loss 0.73"]
    counts = gpu_report.torch_log_counts("\n".join(lines))
    assert (counts["recompiles"], counts["graph_breaks"], counts["lines"]) == (1, 2, 5)
    assert counts["tail"][2] == "Recompiling function f in /tmp/tl.py:2"
    step = python_step("run_compiled", f"print({chr(10).join(lines)!r})", torch_logs=True)
    report = run_fake_plan(monkeypatch, tmp_path, [step])
    assert report["steps"][0]["torch_logs"]["graph_breaks"] == 2
    rows = markdown_rows((tmp_path / "report" / gpu_report.MD_NAME).read_text(), "Training runs")
    assert rows[0][0] == "run_compiled" and rows[0][-2:] == ["1", "2"]


def synthetic_report() -> dict:
    config = {"variant": "fusionvit_9_240", "timm_model": "crossvit_9_240", "precision": "bf16", "compile": False}
    for mode, gflops in (("train", 300_000.0), ("infer", 100_000.0)):
        memory = {"ours": {"peak_memory_mb": 9000.0}, "timm": {"peak_memory_mb": 9100.0}}
        config[mode] = {"ours_img_s": 5000.0, "timm_img_s": 4000.0, "ratio": 1.25, "memory": memory,
                        "ours_gflops": gflops, "timm_gflops": gflops * 0.8}
    ceiling = {"dtype": "bf16", "n": 8192, "device_name": "GPU", "tflops": 600.0, "rounds": 3, "repeats": 10,
               "warmup": 3, "clock": "CUDA events"}
    run = {"status": "completed", "epochs": 2, "images_per_s": 3500.0, "epoch_time_s": 1.5, "data_wait_frac": 0.4,
           "top1": 25.0, "peak_memory_mb": 8000.0}
    steps = [{"step": name, "cap_s": CAPS_S[name], "rc": 0, "status": "ok", "wall_s": 1.0, "figures": figures}
             for name, figures in (("ceiling", ceiling), ("models_eager", [config]), ("run_eager", run))]
    return {"device_name": "GPU", "cpus": 16, "cpu": "Xeon", "torch": "2.11", "cuda": "13.0", "timm": "1.0.31",
            "python": "3.12.3", "wall_s": 3.0, "budget_s": 440, "started_at": "now", "tiny": False,
            "sizes": asdict(FULL), "steps": steps}


def test_the_markdown_tables_show_the_figures_and_the_share_of_the_matmul_ceiling():
    md = gpu_report.to_markdown(synthetic_report())
    assert "bf16 8192^3 matmul on GPU: **600.0 TFLOP/s**" in md
    header = next(line for line in md.splitlines() if line.startswith("| ours | timm |"))
    assert [cell.strip() for cell in header.strip("|").split("|")] == [
        "ours", "timm", "precision", "compiled", "mode", "ours img/s", "timm img/s", "ours/timm", "ours peak MiB",
        "timm peak MiB", "ours share of matmul", "timm share of matmul"]
    train, infer = markdown_rows(md, "Ours vs timm")
    assert train == ["fusionvit_9_240", "crossvit_9_240", "bf16", "False", "train", "5000", "4000", "1.25", "9000",
                     "9100", "0.500", "0.400"]  # 300 TFLOP/s of 600
    assert infer[-2:] == ["0.167", "0.133"]
    assert "models_eager (ok): not measured: fusionvit_small_240 bf16, fusionvit_9_240 fp32" in md
    assert "models_compiled" not in md  # not run here: nothing to say
    (run,) = markdown_rows(md, "Training runs")
    assert run == ["run_eager", "completed", "2", "3500", "1.50", "0.400", "25.0", "8000", "-", "-"]


def pins(listing: str) -> dict:
    lines = [line for line in (ROOT / "device" / listing).read_text().splitlines() if line and line[0] != "#"]
    for line in lines:
        assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][^ ]* --hash=sha256:[0-9a-f]{64}", line), line
    return {Requirement(line.split()[0]).name: line.split()[0].split("==")[1] for line in lines}


def test_the_device_files_pin_what_the_image_lacks_at_our_versions_with_hashes():
    carried = {**pins("requirements.txt"), **pins("sdists.txt")}
    assert {"hydra-core", "omegaconf", "antlr4-python3-runtime", "timm"} <= set(carried)
    assert not {"torch", "torchvision"} & set(carried)  # the image's CUDA build stays
    for name, version in carried.items():
        assert importlib.metadata.version(name) == version, name  # what the .venv runs
    assert f'"timm=={carried["timm"]}"' in (ROOT / "pyproject.toml").read_text()  # our pin
    prepare = (ROOT / "device" / "prepare.sh").read_text()
    assert ("--only-binary=:all: --python-version 3.12 --implementation cp \\\n    --platform manylinux2014_x86_64 "
            "--platform any -d .whl --require-hashes -r device/requirements.txt") in prepare
    assert "--require-hashes -r device/sdists.txt" in prepare
    run = (ROOT / "device" / "gpu_check.sh").read_text()
    assert ("python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "
            ".whl/*.whl") in run and "export PYTHONPATH=/tmp/site" in run
    assert 'python3 -m src.bench.gpu_check --out /tmp/gpu_check --report "$OUT"' in run
    assert "/.whl/" in (ROOT / ".gitignore").read_text().splitlines()


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def image_distributions() -> set:
    """The image's packages and everything they require, as this .venv has them installed."""
    seen, todo = set(), list(IMAGE_PACKAGES)
    while todo:
        name = normal(todo.pop())
        if name in seen:
            continue
        try:
            requires = importlib.metadata.distribution(name).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue
        seen.add(name)
        todo += [req.name for req in map(Requirement, requires) if not req.marker or req.marker.evaluate({"extra": ""})]
    return seen


def entry_module(entry: Path) -> str:
    """The top-level module a site-packages entry provides: ``yaml``, ``_yaml`` (``_yaml.cpython-311-*.so``)."""
    return entry.name.split(".")[0]


def device_image_site(folder: Path) -> Path:
    """A ``sitecustomize`` that swaps this .venv's site-packages for a copy (of links) without the distributions that
    are neither on the GPU image nor carried (device/*.txt), in each Python started with ``folder`` on PYTHONPATH:
    their modules are then missing as they are there (``find_spec`` None, ``import`` ModuleNotFoundError)."""
    allowed = image_distributions() | set(map(normal, {**pins("requirements.txt"), **pins("sdists.txt")}))
    blocked = {module for module, dists in importlib.metadata.packages_distributions().items()
               if module not in ("src", "analysis") and not {normal(d) for d in dists} & allowed}
    venv_site = Path(torch.__file__).parents[1]
    filtered = folder / "site-packages"
    filtered.mkdir(parents=True)
    for entry in venv_site.iterdir():
        metadata = entry.name.endswith(".dist-info")
        if (normal(entry.name.split("-")[0]) in allowed) if metadata else entry_module(entry) not in blocked:
            (filtered / entry.name).symlink_to(entry)
    (folder / "sitecustomize.py").write_text(
        f"import sys\nsys.path[:] = [{str(filtered)!r} if p == {str(venv_site)!r} else p for p in sys.path]\n")
    assert {"hydra", "wandb", "submitit", "adjustText", "tabulate"} & blocked == {"wandb", "submitit", "adjustText",
                                                                                 "tabulate"}
    return folder


@pytest.fixture(scope="module")
def tiny_check(tmp_path_factory):
    """The whole check at toy sizes in a subprocess that sees only the image's packages and the carried ones."""
    tmp = tmp_path_factory.mktemp("gpu_check")
    site = device_image_site(tmp / "site")
    env = {**gpu_check.os.environ, "PYTHONPATH": str(site)}
    missing = subprocess.run([sys.executable, "-c", "import importlib.util as u; print([m for m in ('wandb', "
                              "'tabulate', 'submitit', 'hydra', 'omegaconf', 'antlr4', 'timm', 'torch') if "
                              "u.find_spec(m) is None])"], env=env, capture_output=True, text=True).stdout
    assert missing.split() == ["['wandb',", "'tabulate',", "'submitit']"]  # the image's packages and ours alone
    done = subprocess.run([sys.executable, "-m", "src.bench.gpu_check", "--device", "cpu", "--tiny", "--out",
                           str(tmp / "out"), "--report", str(tmp / "report")], cwd=ROOT, capture_output=True,
                          text=True, env=env)
    return done, tmp


@pytest.mark.slow  # 8 steps, each a process: about a minute on 2 cores
def test_the_steps_run_at_toy_sizes_on_the_image_packages_and_report_their_figures(tiny_check):
    done, tmp = tiny_check
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp / "report" / gpu_report.JSON_NAME).read_text())
    assert [(step["step"], step["status"]) for step in report["steps"]] == [(name, "ok") for name in STEPS]
    assert report["tiny"] and report["sizes"] == json.loads(json.dumps(asdict(TINY)))
    results = json.loads((tmp / "out" / "run_eager" / "results.json").read_text())
    run = next(step["figures"] for step in report["steps"] if step["step"] == "run_eager")
    assert run["epochs"] == len(results["history"]) == 2 and run["status"] == "completed"
    for key in ("images_per_s", "epoch_time_s", "data_wait_frac"):
        assert run[key] == results["history"][-1][key], key  # the last epoch's
    assert results["config"]["data"]["name"] == "imagefolder" and results["config"]["data"]["root"] == str(
        tmp / "out" / "jpegs")
    models = next(step["figures"] for step in report["steps"] if step["step"] == "models_eager")
    assert [(m["variant"], m["precision"]) for m in models] == [("fusionvit_micro_32", "fp32")]
    loader = next(step["figures"] for step in report["steps"] if step["step"] == "loader")
    assert loader["pipeline"] == "uint8" and loader["existing"] and "MaybePILToTensor" in loader["pipelines"][
        "train"]["transform"] and "Normalize" not in loader["pipelines"]["train"]["transform"]
    md = (tmp / "report" / gpu_report.MD_NAME).read_text()
    (eager_row, compiled_row) = markdown_rows(md, "Training runs")
    assert eager_row[:5] == ["run_eager", "completed", "2", f"{run['images_per_s']:.0f}", f"{run['epoch_time_s']:.2f}"]
    assert compiled_row[-2:] == ["0", "0"]  # TORCH_LOGS counted: nothing compiled at toy sizes


@pytest.mark.slow
def test_the_report_folder_holds_only_the_small_report_files(tiny_check):
    _, tmp = tiny_check
    files = {path.name: path.stat().st_size for path in (tmp / "report").iterdir()}
    assert set(files) == {gpu_report.JSON_NAME, gpu_report.MD_NAME, gpu_report.LOGS_NAME}
    assert max(files.values()) < 256 * 1024
    assert {"jpegs", "logs", "run_eager", "run_compiled", "bench", "ceiling.json"} <= {
        path.name for path in (tmp / "out").iterdir()}


def test_a_rerun_of_some_steps_writes_the_jpegs_first_when_they_read_them(tmp_path):
    steps = plan_steps(Plan(tmp_path, "cuda", FULL, dict(CAPS_S)))
    assert [s.name for s in gpu_check.chosen(steps, "models_compiled,run_compiled")] == [
        "jpegs", "run_compiled", "models_compiled"]  # in the plan's order, the JPEGs a fresh machine lacks first
    assert [s.name for s in gpu_check.chosen(steps, "ceiling")] == ["ceiling"]
    with pytest.raises(ValueError, match="--steps run: pick from jpegs, ceiling"):
        gpu_check.chosen(steps, "run")
