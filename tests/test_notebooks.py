"""Every notebook is stored without outputs and runs top to bottom with no edits (nbclient, a real kernel),
showing its table and plots."""

import nbformat
import pytest
from nbclient import NotebookClient
from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_four_notebooks_exist_and_are_stored_without_outputs():
    assert {path.stem for path in NOTEBOOKS} >= {"fusion_ablation", "patch_size_ablation", "branch_width_ablation",
                                                 "fusion_complexity"}
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
    if path.stem == "fusion_complexity":
        assert "gmacs_slope" in markdown
        assert list(tmp_path.glob("fusion_complexity/fusion_cost.png"))
    else:
        assert "top-1 (%)" in markdown and "FLOPs (GMACs)" in markdown
        assert len(images) == 3
        assert list(tmp_path.glob("*_quick/*/results.json"))  # it ran its own sweep
