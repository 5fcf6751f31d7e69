"""Malformed results.json files (a field of the wrong type, bytes that are not JSON, non-finite metrics) in a sweep
of good ones: collate and report still tabulate the good runs, each bad file gives exactly one warning naming it
and its field, a run without a finite top-1 is left out of n and named, and an inf never reads as a spread."""
import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from test_analysis import results, write_sweep

from analysis.collate import main as collate_main
from analysis.report import main as report_main
from analysis.runs.local import load_runs
from analysis.runs.records import NoRunsError
from analysis.runs.wandb_api import load_wandb_runs
from analysis.stats.ablation import analyse
from analysis.stats.flags import DEFAULT_CHECKS, check_rows

from conftest import run_module

SKIPPED, LEFT_OUT, KEPT = "skipped", "left out of n", "kept"
DELETE = object()


def setting(*path, value):
    """A corruption: the record with the field at ``path`` set to ``value`` (DELETE removes it)."""
    def corrupt(record: dict) -> bytes:
        *parents, leaf = path
        node = record
        for key in parents:
            node = node[key]
        if value is DELETE:
            del node[leaf]
        else:
            node[leaf] = value
        return json.dumps(record).encode()  # NaN and inf as the literals Python's json reads back
    return corrupt


def raw(make_bytes):
    return lambda record: make_bytes(json.dumps(record).encode())


# (corruption, what the one warning must say: a phrase, or a non-finite metric's field and value, what becomes of
# the run)
MALFORMED = {
    "history_as_string": (setting("history", value="oops"), "history is a string, expected a list of epoch rows",
                          SKIPPED),
    "history_of_strings": (setting("history", value=["epoch 0"]), "history[0] is a string, expected an epoch row",
                           SKIPPED),
    "model_as_string": (setting("model", value="crossvit"), "model is a string, expected a dict", SKIPPED),
    "config_model_as_string": (setting("config", "model", value="micro"), "config.model is a string", SKIPPED),
    "final_as_list": (setting("final", value=[80.0]), "final is a list, expected a dict", SKIPPED),
    "patch_size_as_int": (setting("model", "patch_size", value=4), "model.patch_size is an int, expected a list",
                          SKIPPED),
    "seed_as_string": (setting("seed", value="0"), "seed is a string, expected an int", SKIPPED),
    "choices_as_list": (setting("choices", value=["fusion=cross"]), "choices is a list, expected a dict", SKIPPED),
    "config_null": (setting("config", value=None), "config is null, expected a dict", SKIPPED),
    "status_unknown": (setting("status", value="done"), "unknown status 'done'", SKIPPED),
    "truncated": (raw(lambda text: text[: len(text) // 2]), "corrupt: not valid JSON", SKIPPED),
    "empty": (raw(lambda text: b""), "corrupt: the file is empty", SKIPPED),
    "top_level_list": (raw(lambda text: b"[" + text + b"]"), "the file holds a list", SKIPPED),
    "not_utf8": (raw(lambda text: b"\xff\xfe" + text), "corrupt: not UTF-8", SKIPPED),
    "top1_abc": (setting("final", "top1", value="abc"), ("no finite final.top1", "'abc'"), LEFT_OUT),
    "top1_nan": (setting("final", "top1", value=float("nan")), ("no finite final.top1", "NaN"), LEFT_OUT),
    "top1_inf": (setting("final", "top1", value=float("inf")), ("no finite final.top1", "inf"), LEFT_OUT),
    "top1_missing": (setting("final", "top1", value=DELETE), ("no finite final.top1", "missing"), LEFT_OUT),
    "top5_nan": (setting("final", "top5", value=float("nan")), ("no finite final.top5", "NaN"), KEPT),
    "best_top1_minus_inf": (setting("best", "top1", value=float("-inf")), ("no finite best.top1", "-inf"), KEPT),
    "history_row_without_top1": (setting("history", 1, "top1", value=DELETE),
                                 ("no finite history top1", "missing at epoch 1"), KEPT),
}
N_GOOD = {"all_attn": 3, "cross": 3, "none": 2}  # write_sweep's runs; job 0 is cross, seed 0


def corrupt_job(sweep: Path, job: str, name: str) -> Path:
    file = sweep / job / "results.json"
    corrupt, _, _ = MALFORMED[name]
    file.write_bytes(corrupt(json.loads(file.read_text())))
    return file


def warnings_naming(lines, file: Path):
    return [line for line in lines if str(file) in line]


def says(line: str, name: str, file: Path) -> bool:
    """The warning names ``file`` and what is wrong with it: one line may list several runs' non-finite values."""
    expected = MALFORMED[name][1]
    if isinstance(expected, tuple):
        field, value = expected
        return field in line and f"{value} in {file}" in line
    return expected in line and str(file) in line


@pytest.mark.parametrize("name", MALFORMED)
def test_a_malformed_file_gives_one_warning_naming_it_and_its_field_and_every_good_run_stays(tmp_path, name):
    effect = MALFORMED[name][2]
    sweep = write_sweep(tmp_path)
    bad = corrupt_job(sweep, "0", name)
    warnings = []
    collection = load_runs([sweep], warn=warnings.append)
    ablation = analyse(collection.runs, ["fusion"], warn=warnings.append)
    assert len(warnings) == 1 and says(warnings[0], name, bad), warnings
    assert {str(sweep / str(job)) for job in range(1, 8)} <= set(collection.runs["run_dir"])
    n = dict(N_GOOD, cross=3 if effect == KEPT else 2)
    assert ablation.table.set_index("fusion")["n"].to_dict() == n
    assert (ablation.table["flag"] == "").all()  # an inf is no spread over seeds


def test_non_finite_top1_values_are_counted_and_named_in_one_warning(tmp_path):
    sweep = write_sweep(tmp_path)
    nan_file, inf_file = corrupt_job(sweep, "0", "top1_nan"), corrupt_job(sweep, "1", "top1_inf")
    warnings = []
    runs = load_runs([sweep], warn=warnings.append).runs
    assert warnings == [f"2 runs have no finite final.top1 (NaN in {nan_file}, inf in {inf_file}): left out of the "
                        f"table (each row's n counts its runs with a finite top-1)"]
    table = analyse(runs, ["fusion"]).table.set_index("fusion")
    assert table.loc["cross", "n"] == 1 and table.loc["cross", "top1_mean"] == pytest.approx(84.0)


def test_an_inf_top1_reaching_the_flags_is_no_seeds_disagree():
    rows = [pd.DataFrame({"top1": top1, "seed": [0, 1, 2], "history": [[]] * 3})
            for top1 in ([80.0, 82.0, float("inf")], [70.0, 71.0, 72.0])]
    assert check_rows(rows, DEFAULT_CHECKS)["flag"].tolist() == ["", ""]


def mixed_sweep(root: Path) -> dict:
    """write_sweep's good runs plus one malformed copy of a cross run per malformation (seeds 100 on)."""
    sweep = write_sweep(root)
    files = {}
    for seed, name in enumerate(MALFORMED, start=100):
        run_dir = sweep / f"malformed_{name}"
        run_dir.mkdir()
        (run_dir / "results.json").write_text(json.dumps(results("cross", seed, 80.0, run_dir)))
        files[name] = corrupt_job(sweep, run_dir.name, name)
    return {"sweep": sweep, "files": files}


@pytest.mark.slow
def test_collate_and_report_clis_survive_a_folder_mixing_good_and_every_malformed_file(tmp_path):
    mixed = mixed_sweep(tmp_path)
    sweep, out = mixed["sweep"], tmp_path / "out"
    collate = run_module("analysis.collate", str(sweep), "--out", str(out))
    assert collate.returncode == 0, collate.stderr[-3000:]
    assert "| cross" in collate.stdout and "seeds disagree" not in collate.stdout.lower()
    report = run_module("analysis.report", str(sweep), "--out", str(tmp_path / "report.html"))
    assert report.returncode == 0, report.stderr[-3000:]
    assert "<h2>Ablation table</h2>" in (tmp_path / "report.html").read_text()
    for stderr in (collate.stderr, report.stderr):
        for name, file in mixed["files"].items():
            named = warnings_naming(stderr.splitlines(), file)
            assert len(named) == 1 and says(named[0], name, file), (name, named)
    kept = sum(effect == KEPT for _, _, effect in MALFORMED.values())
    n = pd.read_csv(out / "ablation.csv").set_index("fusion")["n"].to_dict()
    assert n == dict(N_GOOD, cross=3 + kept)


def test_nothing_collatable_left_exits_1_naming_every_skipped_file(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for job, name in enumerate(("history_as_string", "empty", "config_null")):
        (sweep / str(job)).mkdir(parents=True)
        (sweep / str(job) / "results.json").write_text(json.dumps(results("cross", job, 80.0, sweep / str(job))))
        corrupt_job(sweep, str(job), name)
    assert collate_main([str(sweep), "--no-plots"]) == 1
    err = capsys.readouterr().err
    assert "no runs found" in err and "3 file(s) or folder(s) skipped: see the warnings above" in err
    assert all(len(warnings_naming(err.splitlines(), sweep / str(job) / "results.json")) == 1 for job in range(3))
    assert report_main([str(sweep)]) == 1 and not (sweep / "report.html").exists()


def test_completed_runs_that_all_lack_a_finite_top1_leave_nothing_to_tabulate(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for job, name in enumerate(("top1_nan", "top1_inf")):
        (sweep / str(job)).mkdir(parents=True)
        (sweep / str(job) / "results.json").write_text(json.dumps(results("cross", job, 80.0, sweep / str(job))))
        corrupt_job(sweep, str(job), name)
    with pytest.raises(NoRunsError, match="no completed run has a finite final.top1"):
        load_runs([sweep], warn=lambda message: None)
    assert collate_main([str(sweep), "--no-plots"]) == 1
    assert "2 runs have no finite final.top1" in capsys.readouterr().err


def test_a_wandb_run_with_a_nan_top1_is_left_out_and_named():
    def fake_run(run_id, top1):
        return SimpleNamespace(id=run_id, url=f"https://wandb.ai/e/p/runs/{run_id}", state="finished",
                               config={"fusion": "cross", "seed": 0}, summary={"final/top1": top1},
                               history=lambda keys, pandas: [])
    api = SimpleNamespace(runs=lambda path, filters: [fake_run("a", 80.0), fake_run("b", float("nan"))])
    warnings = []
    runs = load_wandb_runs("e/p", api=api, warn=warnings.append).runs
    assert runs["run_dir"].tolist() == ["https://wandb.ai/e/p/runs/a"]
    assert len(warnings) == 1 and "no finite final.top1 (NaN in https://wandb.ai/e/p/runs/b)" in warnings[0]
