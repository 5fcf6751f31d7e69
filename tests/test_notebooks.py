"""The notebooks: one per ablation the paper reports, built from experiments/ablations.yaml and stored with the
outputs the shipped results (results/cpu/) produce; re-executed here (nbclient, a real kernel), their tables
must come out the same, so a stored table can never go stale. The other two notebooks run top to bottom."""
import json
import shutil
from typing import Dict, List

import nbformat
import pytest
import yaml

from analysis.paper import ablations
from analysis.paper.ablations import specs
from analysis.paper.build_notebooks import NOTEBOOKS, build, execute_all, path_of
from analysis.paper.shipped import ShippedResultsError, check_folder, export, results_dir, sweep_for
from analysis.runs.local import load_runs
from analysis.runs.records import BLOCKED_BY_SEED
from analysis.stats.ablation import analyse
from analysis.stats.summary import varying_factors

from conftest import ROOT, compose_config

PAPER_ABLATIONS = {"fusion", "patch_size", "branch_width", "branch_depth", "cross_layers", "encoders", "class_token",
                   "scales", "fusion_tuned"}
OTHER_NOTEBOOKS = ["fusion_complexity", "attention_maps"]


def comparable_outputs(notebook) -> List[List[Dict[str, str]]]:
    """Per code cell, the text each output shows (Markdown, plain text, streams, errors): what must not go
    stale. Images are left out (their bytes depend on the matplotlib version); their presence is kept."""
    shown = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.outputs:
            data = output.get("data", {})
            outputs.append({"type": output["output_type"], "name": output.get("name", ""),
                            "text": output.get("text", "") or data.get("text/markdown", "") or
                            ("<image>" if "image/png" in data else data.get("text/plain", ""))})
        shown.append(outputs)
    return shown


def test_every_paper_ablation_has_a_notebook_stored_as_the_builder_writes_it_with_outputs():
    assert set(specs()) == PAPER_ABLATIONS
    assert {path.stem for path in NOTEBOOKS.glob("*.ipynb")} == {spec.notebook for spec in specs().values()} | set(
        OTHER_NOTEBOOKS)
    for ablation in specs().values():
        stored = nbformat.read(path_of(ablation), as_version=4)
        nbformat.validate(stored)
        assert [(c.cell_type, c.source) for c in stored.cells] == [(c.cell_type, c.source)
                                                                   for c in build(ablation).cells], (
            f"{ablation.notebook}: edited by hand or ablations.yaml changed: python -m analysis.paper.build_notebooks "
            f"{ablation.name}")
        code = [cell for cell in stored.cells if cell.cell_type == "code"]
        assert all(cell.outputs for cell in code[1:]), f"{ablation.notebook}: stored without outputs"  # [0]: setup
        assert "TODO" not in json.dumps(stored.cells[-1].source), ablation.notebook


def test_the_ablation_index_may_carry_keys_and_sections_the_notebooks_do_not_use(tmp_path, monkeypatch):
    before = specs()["fusion"]
    index = yaml.safe_load(ablations.SPEC_FILE.read_text())
    index["ablations"]["fusion"]["swept"] = ["fusion"]  # what src.sweeps may add
    index["other_ablations"] = {"lr": {"title": "Learning rate", "preset": "lr_cpu", "minutes": 1}}
    (tmp_path / "ablations.yaml").write_text(yaml.safe_dump(index, sort_keys=False, allow_unicode=True))
    monkeypatch.setattr(ablations, "SPEC_FILE", tmp_path / "ablations.yaml")
    assert specs()["fusion"] == before and set(specs()) == PAPER_ABLATIONS
    del index["ablations"]["fusion"]["question"]
    (tmp_path / "ablations.yaml").write_text(yaml.safe_dump(index, sort_keys=False, allow_unicode=True))
    with pytest.raises(KeyError, match="ablation fusion: no question"):
        specs()


def test_shipped_results_hold_every_row_of_every_ablation_with_the_presets_seeds():
    for ablation in specs().values():
        folder = results_dir(ablation.name)
        check_folder(folder, ablation.preset)
        assert not list(folder.rglob("*.pt")) and not list(folder.rglob("wandb")), "checkpoints are not shipped"
        warnings = []  # one machine per preset, or whole seeds per machine (the fusion ablation's seeds 6-12)
        collection = load_runs([folder], warn=warnings.append)
        assert collection.failed.empty and not collection.duplicates
        result = analyse(collection.runs, varying_factors(collection.runs, collection.candidate_factors),
                         ref=ablation.reference_label, warn=warnings.append)
        assert all(BLOCKED_BY_SEED in warning for warning in warnings), (ablation.name, warnings)
        assert sorted(result.table["label"]) == sorted(ablation.rows), ablation.name
        seeds = sorted(int(seed) for seed in  # the preset's own seeds (cpu/proxy's 0-2, or more)
                       str(compose_config([f"+experiment={ablation.preset}"], hydra=True).hydra.sweeper.params.seed)
                       .split(","))
        assert (result.table["n"] == len(seeds)).all() and all(row == seeds for row in result.table["seeds"])
        provenance = [json.loads(path.read_text())["provenance"] for path in folder.rglob("results.json")]
        assert {(p["threads"], p["git_dirty"]) for p in provenance} == {(1, False)}, "one thread, committed code"


def test_a_notebook_pointed_at_an_empty_or_foreign_folder_says_what_it_looked_for(tmp_path, monkeypatch):
    with pytest.raises(ShippedResultsError, match=r"results.json files of \+experiment=patch_size_ablation_cpu "
                                                  r"under .*missing: the folder does not exist"):
        check_folder(tmp_path / "missing", "patch_size_ablation_cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ShippedResultsError, match="under .*empty: found none; regenerate them with RERUN = True"):
        check_folder(tmp_path / "empty", "patch_size_ablation_cpu")
    run = next(results_dir("fusion").iterdir())
    shutil.copytree(run, tmp_path / "foreign" / run.name)
    with pytest.raises(ShippedResultsError, match=r"it holds 1 of \+experiment=fusion_ablation_cpu; point the "
                                                  r"notebook at a folder of \+experiment=patch_size_ablation_cpu"):
        check_folder(tmp_path / "foreign", "patch_size_ablation_cpu")
    monkeypatch.setenv("FUSIONVIT_RESULTS_DIR", str(tmp_path))
    (tmp_path / "patch_size").mkdir()
    with pytest.raises(ShippedResultsError, match="found none"):
        sweep_for("patch_size")  # what the notebook's first cell calls


def test_export_ships_results_and_predictions_only_and_replaces_stale_runs(tmp_path):
    dest = tmp_path / "ablation"
    (dest / "old_run").mkdir(parents=True)
    (dest / "old_run" / "results.json").write_text("{}")
    written = export(results_dir("class_token"), dest)
    assert not (dest / "old_run").exists() and len(written) == 6
    for run in written:
        assert sorted(path.name for path in run.iterdir()) == ["results.json", "val_predictions.npz"]
        assert json.loads((run / "results.json").read_text())["run_dir"] == str(run)  # outside the repo: absolute
    shipped = load_runs([results_dir("class_token")]).runs
    assert load_runs([dest]).runs["top1"].sum() == pytest.approx(shipped["top1"].sum())


@pytest.mark.slow
def test_ablation_notebooks_reproduce_their_stored_tables_from_the_shipped_results(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSIONVIT_NOTEBOOK_OUT", str(tmp_path))  # the kernels inherit it: no writes to the repo
    monkeypatch.delenv("FUSIONVIT_RERUN", raising=False)
    ablations = list(specs().values())
    stored = [nbformat.read(path_of(ablation), as_version=4) for ablation in ablations]
    fresh = [build(ablation) for ablation in ablations]
    execute_all(fresh)  # raises on any cell's error
    for ablation, old, new in zip(ablations, stored, fresh):
        assert comparable_outputs(new) == comparable_outputs(old), (
            f"{ablation.notebook}: stored outputs are stale: python -m analysis.paper.build_notebooks {ablation.name}")
        markdown = "".join(output["text"] for cell in comparable_outputs(new) for output in cell)
        for expected in ("paper row", "within tolerance", "top-1 (%)", "Δ vs", "verdict", "<image>"):
            assert expected in markdown, (ablation.notebook, expected)
        assert markdown.count("<image>") == 4  # the forest plot first, then the three of before
        assert str(ROOT) not in markdown and str(tmp_path) not in markdown, "outputs name this machine's folders"


@pytest.mark.slow
def test_an_ablation_notebook_reruns_its_sweep_on_a_quick_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSIONVIT_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.setenv("FUSIONVIT_RESULTS_DIR", str(tmp_path / "results"))  # shipped results stay untouched
    monkeypatch.setenv("FUSIONVIT_RERUN", "quick")
    ablation = specs()["class_token"]
    notebook = build(ablation)
    execute_all([notebook])
    runs = sorted(tmp_path.glob(f"{ablation.preset}_quick/*/results.json"))
    assert len(runs) == 4  # 2 rows x 2 seeds, one epoch
    assert all(json.loads(path.read_text())["history"][-1]["epoch"] == 0 for path in runs)
    shown = "".join(output["text"] for cell in comparable_outputs(notebook) for output in cell)
    assert "| True " in shown and "| False " in shown and "verdict" in shown
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", OTHER_NOTEBOOKS)
def test_notebook_runs_top_to_bottom_and_shows_its_plot(name, tmp_path, monkeypatch):
    monkeypatch.setenv("FUSIONVIT_NOTEBOOK_OUT", str(tmp_path))
    path = NOTEBOOKS / f"{name}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    execute_all([notebook])
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    markdown = "".join(output.get("data", {}).get("text/markdown", "") for output in outputs)
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(images) == 1, "one figure"
    if name == "attention_maps":
        assert list(tmp_path.glob("attention_maps_quick/attention_maps.png"))
        assert list(tmp_path.glob("attention_maps_quick/*/last.pt"))  # it trained its own models
        check_attention_mass(markdown)
    else:
        assert "gmacs_slope" in markdown
        assert list(tmp_path.glob("fusion_complexity/fusion_cost.png"))


def check_attention_mass(markdown):
    """The notebook's table of where each CLS query's attention goes: cross's CLS reads only its own CLS and
    the other branch's patches (Eq. 5-7), all_attn's reads every token; each row sums to 1."""
    table = [[cell.strip() for cell in line.strip().strip("|").split("|")]
             for line in markdown.splitlines() if line.startswith("| ")]
    header = next(cells for cells in table if cells[:2] == ["fusion", "query"])
    assert header[2:] == ["own CLS", "own patches", "other CLS", "other patches", "sum", "other patches if uniform"]
    rows = {(cells[0], cells[1]): dict(zip(("own_cls", "own", "other_cls", "other", "sum", "uniform"),
                                           map(float, cells[2:])))
            for cells in table if len(cells) == len(header) and cells[1].endswith(" CLS")}
    assert set(rows) == {(fusion, f"{branch} CLS") for fusion in ("cross", "all_attn") for branch in "SL"}
    for (fusion, _), row in rows.items():
        assert row["sum"] == pytest.approx(1.0, abs=1e-3)
        assert row["own_cls"] + row["own"] + row["other_cls"] + row["other"] == pytest.approx(1.0, abs=3e-3)
        assert row["other"] > 0 and 0 < row["uniform"] < 1
        if fusion == "cross":
            assert row["own"] == 0 and row["other_cls"] == 0
        else:
            assert row["own"] > 0 and row["other_cls"] > 0
