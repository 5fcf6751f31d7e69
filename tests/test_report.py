"""``python -m analysis.report``: one self-contained HTML page per set of sweeps, checked as HTML and rendered in
a real headless browser (Debian's chromium: the table is in the DOM, the three inlined plots decode, and the
screenshot shows them)."""
import base64
import json
import os
import re
import shutil
import statistics
import subprocess

import pytest

from analysis.paper.shipped import results_dir
from analysis.report import main
from src.plot_style import FUSIONS

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
# CI sets it (.ci/run installs chromium): there a missing browser fails instead of skipping.
REQUIRE_BROWSER = os.environ.get("FUSIONVIT_REQUIRE_BROWSER") == "1"


def shipped_runs() -> list:
    """The shipped fusion sweep's records: the counts and figures the page must show are read from them."""
    return [json.loads(path.read_text()) for path in sorted(results_dir("fusion").glob("*/results.json"))]


def row_figure(runs: list, fusion: str) -> str:
    """The row's final top-1 as the table prints it (mean ± sample std over seeds), computed here on its own."""
    top1 = [run["final"]["top1"] for run in runs if run["choices"]["fusion"] == fusion]
    return f"{statistics.mean(top1):.2f} ± {statistics.stdev(top1):.2f}"


def hex_rgb(colour: str):
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


@pytest.fixture(scope="module")
def fusion_report(tmp_path_factory):
    """The shipped fusion sweep plus a second copy of one run and a failed run: the page for that folder."""
    sweep = tmp_path_factory.mktemp("report") / "sweep"
    shutil.copytree(results_dir("fusion"), sweep / "fusion_ablation_cpu")
    runs = sorted((sweep / "fusion_ablation_cpu").iterdir())
    shutil.copytree(runs[0], sweep / "copied" / runs[0].name)
    failed = json.loads((runs[1] / "results.json").read_text())
    failed.update(status="failed", reason="RuntimeError: out of memory", seed=7)
    (sweep / "crashed" / "run").mkdir(parents=True)
    (sweep / "crashed" / "run" / "results.json").write_text(json.dumps(failed))
    out = sweep / "report.html"
    assert main([str(sweep), "--out", str(out)]) == 0
    return out, runs


def test_report_holds_the_table_inlined_plots_config_diff_provenance_and_problem_runs(fusion_report):
    out, runs = fusion_report
    page = out.read_text()
    assert "src=\"http" not in page and "<link" not in page, "self-contained: nothing fetched"
    shipped = shipped_runs()
    fusions = sorted({run["choices"]["fusion"] for run in shipped})
    assert len(fusions) == 6 and "cross" in fusions
    table = page.split("<h2>Ablation table</h2>")[1].split("<h2>")[0]
    assert [row for row in fusions if f"<td>{row}</td>" in table] == fusions
    assert all(row_figure(shipped, row) in table for row in fusions) and "Reference: cross" in table
    assert page.index("<h2>Differences to the reference</h2>") < page.index("<h2>Ablation table</h2>")  # headline
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 4 and all(base64.b64decode(image)[:8] == b"\x89PNG\r\n\x1a\n" for image in images)
    varied = page.split("<h3>Varied")[1].split("<details>")[0]
    seeds = sum(run["choices"]["fusion"] == "cross" for run in shipped)
    assert "<td>fusion.name</td>" in varied and f"cross ({seeds})" in varied and "<td>optim.lr</td>" not in varied
    assert "<td>fusion.layers</td>" not in varied  # it follows the fusion chosen: nobody changed it
    assert re.search(rf"Held fixed: \d+ config keys with one value across all {len(shipped)} runs", page)
    provenance = page.split("<h2>Provenance</h2>")[1]
    sha = json.loads((runs[0] / "results.json").read_text())["provenance"]["git_sha"]
    same_sha = sum(run["provenance"]["git_sha"] == sha for run in shipped)
    assert f"{sha[:12]} ({same_sha})" in provenance and "<td>threads</td>" in provenance
    assert f"1 ({len(shipped)})" in provenance
    problems = page.split("<h2>Failed runs and duplicates</h2>")[1]
    assert "1 run(s) did not complete" in problems and "RuntimeError: out of memory" in problems
    assert "the same run" in problems and runs[0].name in problems


@pytest.mark.skipif(CHROMIUM is None and not REQUIRE_BROWSER, reason="no chromium (apt-get install chromium)")
def test_report_renders_in_headless_chromium_with_its_table_and_images(fusion_report, tmp_path):
    import matplotlib.image

    assert CHROMIUM, "FUSIONVIT_REQUIRE_BROWSER=1 but no chromium on PATH: apt-get install chromium"
    out, _ = fusion_report
    browser = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2600"]
    dom = subprocess.run([*browser, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    assert 'data-images-loaded="4"' in dom, "the four inlined plots did not decode in the browser"
    assert dom.count("<tr>") > 6 and "gated_cross" in dom
    shot = tmp_path / "report.png"
    subprocess.run([*browser, f"--screenshot={shot}", out.as_uri()], capture_output=True, timeout=120, check=True)
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (2600, 1280)
    # The plots' markers and curves are cross's blue and cls_token's green (analysis/present/style.py); the page's
    # own colours are greys, so these pixels are the plots, painted.
    for colour in (hex_rgb(FUSIONS["cross"].color), hex_rgb(FUSIONS["cls_token"].color)):
        close = (abs(pixels * 255 - colour) < 12).all(axis=-1)
        assert close.sum() > 200, f"no plot colour {colour} in the screenshot"
    text_rows = (pixels[:400].mean(axis=-1) < 0.3).any(axis=1).sum()
    assert text_rows > 50, "no dark text (the title and the table) at the top of the page"


def test_report_over_runs_that_vary_in_nothing_but_the_seed_says_so_and_writes_nothing(tmp_path, capsys):
    for run in results_dir("fusion").glob("fusion=cross,*"):
        shutil.copytree(run, tmp_path / run.name)
    assert main([str(tmp_path)]) == 2
    error = capsys.readouterr().err
    seeds = sum(run["choices"]["fusion"] == "cross" for run in shipped_runs())
    assert f"the {seeds} completed run(s) vary in nothing but the seed (one configuration: fusion=cross)" in error
    assert "no ablation to tabulate" in error and not (tmp_path / "report.html").exists()


def test_report_with_no_runs_says_where_it_looked(tmp_path, capsys):
    assert main([str(tmp_path)]) == 1
    assert f"no readable results.json of src.run under {tmp_path}" in capsys.readouterr().err
