"""Every notebook is stored without outputs and runs top to bottom with no edits (nbclient, a real kernel),
showing its table and plots."""

import nbformat
import pytest
from nbclient import NotebookClient
from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_notebooks_exist_and_are_stored_without_outputs():
    assert {path.stem for path in NOTEBOOKS} >= {"fusion_ablation", "patch_size_ablation", "branch_width_ablation",
                                                 "fusion_complexity", "attention_maps"}
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            assert cell.cell_type != "code" or (not cell.outputs and cell.execution_count is None), path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_top_to_bottom_and_shows_table_and_plots(path, tmp_path, monkeypatch):
    monkeypatch.setenv("FUSIONVIT_NOTEBOOK_OUT", str(tmp_path))  # the kernel inherits it: no writes to the repo
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()  # raises on any cell error
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    markdown = "".join(output.get("data", {}).get("text/markdown", "") for output in outputs)
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert images, "no plot shown"
    if path.stem == "attention_maps":
        assert len(images) == 1
        assert list(tmp_path.glob("attention_maps_quick/attention_maps.png"))
        assert list(tmp_path.glob("attention_maps_quick/*/last.pt"))  # it trained its own models
        check_attention_mass(markdown)
    elif path.stem == "fusion_complexity":
        assert "gmacs_slope" in markdown
        assert list(tmp_path.glob("fusion_complexity/fusion_cost.png"))
    else:
        assert "top-1 (%)" in markdown and "FLOPs (GMACs)" in markdown
        assert len(images) == 3
        assert list(tmp_path.glob("*_quick/*/results.json"))  # it ran its own sweep


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
