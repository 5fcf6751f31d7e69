"""The HTML page of ``python -m analysis.report``: one self-contained page per set of sweeps with the ablation
table (as ``collate`` prints it, with its legend and flag lines), the plots inlined as PNG, what varied across
the runs and what was held fixed (a diff of their resolved configs), provenance (code versions, devices, thread
counts, library versions) and the runs that failed, were skipped or were found twice."""
import base64
import datetime
import html
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import pandas as pd

from analysis.runs.local import load_runs
from analysis.runs.records import Collection, NoRunsError
from analysis.stats.ablation import Ablation, analyse
from analysis.stats.flags import DEFAULT_CHECKS, Checks
from analysis.stats.sequential import Design
from analysis.stats.summary import varying_factors
from src.train.record import RunRecord
from src.train.record_io import read_results

from .config_diff import config_diff
from .plots import write_plots
from .tables import ablation_table, table_notes

HEADLINE = {"forest": "Each row's difference to the reference, with its verdict"}
PLOTS = {"top1_vs_gflops": "Top-1 against FLOPs", "top1_vs_params": "Top-1 against parameters",
         "val_curves": "Validation top-1 per epoch"}
# Per-run provenance shown (results.json's provenance, plus the run's wall time).
PROVENANCE = {"git_sha": "code version", "git_dirty": "uncommitted changes", "device": "device",
              "threads": "threads", "torch": "torch", "timm": "timm", "python": "python"}
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
img { max-width: 100%; }
figure img { width: 560px; }
figure { display: inline-block; margin: 0 1em 1em 0; }
.note { color: #444; font-size: 0.9em; }
.problem { color: #a00; }
"""
# After the page has loaded, how many images decoded: a check for headless browsers (tests/test_report.py).
CHECK_SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.filter.call(document.images, function (img) { return img.naturalWidth > 0; });
  document.body.setAttribute("data-images-loaded", String(images.length));
});
"""


class NoFactorError(ValueError):
    """The runs vary in nothing but the seed: there is no ablation to tabulate."""


def run_record(run_dir: str) -> RunRecord:
    """The run's results.json; {} when it is gone or unreadable (the page still shows the rest)."""
    try:
        return read_results(Path(run_dir))
    except (OSError, ValueError):
        return {}


def frame_html(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, escape=True, border=0, na_rep="-")


def section(title: str, body: str) -> str:
    return f"<h2>{html.escape(title)}</h2>\n{body}\n"


def paragraphs(lines: List[str], css: str = "note") -> str:
    return "".join(f'<p class="{css}">{html.escape(line)}</p>\n' for line in lines)


def inline_plots(collection: Collection, ablation: Ablation) -> Dict[str, str]:
    """Each plot as an inline PNG figure, by name (``HEADLINE`` and ``PLOTS``)."""
    figures = {}
    with tempfile.TemporaryDirectory() as folder:
        paths = write_plots(collection.runs, ablation, Path(folder))
        for name, title in {**HEADLINE, **PLOTS}.items():
            encoded = base64.b64encode(paths[name][0].read_bytes()).decode("ascii")
            figures[name] = (f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{encoded}">'
                             f"<figcaption>{html.escape(title)}</figcaption></figure>")
    return figures


def config_section(results: List[RunRecord], factors: List[str]) -> str:
    varied, fixed = config_diff([result.get("config") or {} for result in results])
    varied = varied[varied["key"] != "seed"]
    seeds = sorted({result.get("seed") for result in results}, key=str)
    body = (f'<p>Table rows are grouped by: <b>{html.escape(", ".join(factors))}</b>; seeds: '
            f'{html.escape(", ".join(map(str, seeds)))}.</p>\n')
    body += ("<h3>Varied (resolved config keys with more than one value; the keys inside a group whose choice "
             "varies follow that choice and are left out)</h3>\n")
    body += frame_html(varied) if len(varied) else "<p>Nothing but the seed.</p>\n"
    body += (f"<details><summary>Held fixed: {len(fixed)} config keys with one value across all "
             f"{len(results)} runs</summary>\n{frame_html(fixed)}</details>\n")
    return body


def provenance_section(results: List[RunRecord]) -> str:
    rows = []
    for result in results:
        provenance = result.get("provenance") or {}
        row = {title: provenance.get(key) for key, title in PROVENANCE.items()}
        row["code version"] = (row["code version"] or "unknown")[:12]
        row["run"] = Path(str(result.get("run_dir", "?"))).name
        row["wall time (s)"] = None if result.get("wall_time_s") is None else round(result["wall_time_s"], 1)
        row["peak memory (MB)"] = provenance.get("peak_memory_mb")
        rows.append(row)
    frame = pd.DataFrame(rows)
    summary = []
    for title in PROVENANCE.values():
        counts = frame[title].astype(str).value_counts()
        summary.append({"": title, "values (runs)": ", ".join(f"{value} ({count})" for value, count in counts.items())})
    mixed = [title for title in ("code version", "device", "threads") if frame[title].astype(str).nunique() > 1]
    warning = (paragraphs([f"These runs mix {', '.join(mixed)}: results can differ with them."], "problem")
               if mixed else "")
    ordered = frame[["run", *PROVENANCE.values(), "wall time (s)", "peak memory (MB)"]]
    return (frame_html(pd.DataFrame(summary)) + warning +
            f"<details><summary>Per run ({len(frame)})</summary>\n{frame_html(ordered)}</details>\n")


def problems_section(collection: Collection) -> str:
    parts = []
    if collection.failed.empty:
        parts.append("<p>Failed or interrupted runs: none.</p>")
    else:
        failed = collection.failed[["run_dir", "status", "reason"]].rename(columns={"run_dir": "run"})
        parts.append(f'<p class="problem">{len(failed)} run(s) did not complete (not in the table):</p>'
                     + frame_html(failed))
    if collection.duplicates:
        parts.append(f'<p class="problem">Found in several folders, counted once ({len(collection.duplicates)}):</p>'
                     + "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in collection.duplicates) + "</ul>")
    else:
        parts.append("<p>Duplicate runs (same config and seed in several folders): none.</p>")
    if collection.skipped:
        parts.append(f'<p class="problem">Skipped folders ({len(collection.skipped)}):</p>' + frame_html(
            pd.DataFrame(collection.skipped, columns=["folder", "why"])))
    return "\n".join(parts)


def check_factors(collection: Collection, factors: List[str]) -> None:
    """Raises NoFactorError when the table would have one row: the runs share every factor."""
    runs = collection.runs
    configurations = len(runs[factors].astype(str).drop_duplicates()) if factors else 1
    if configurations < 2:
        raise NoFactorError(
            f"the {len(runs)} completed run(s) vary in nothing but the seed (one configuration: "
            f"{', '.join(f'{factor}={runs.iloc[0][factor]}' for factor in factors) or 'no factor'}): there is no "
            f"ablation to tabulate. Give sweeps that vary a factor (e.g. multirun/fusion_ablation_cpu), or "
            f"read this configuration's mean with python -m analysis.collate")


def render(sweep_dirs: List[Path], ref: Optional[str] = None, title: Optional[str] = None,
           checks: Checks = DEFAULT_CHECKS, warn=print, margin: Optional[float] = None,
           design: Optional[Design] = None) -> str:
    """The page's HTML. Raises NoRunsError, NoFactorError or stats.reference.UnknownReferenceError."""
    collection = load_runs(sweep_dirs, warn=warn)
    if collection.runs.empty:
        raise NoRunsError(f"no completed run under {', '.join(map(str, sweep_dirs))} "
                          f"({len(collection.failed)} failed or interrupted)")
    factors = varying_factors(collection.runs, collection.candidate_factors)
    check_factors(collection, factors)
    ablation = analyse(collection.runs, factors, ref=ref, warn=warn, checks=checks, margin=margin, design=design)
    results = [run_record(run_dir) for run_dir in collection.runs["run_dir"]]
    title = title or "Ablation report: " + ", ".join(Path(folder).name for folder in sweep_dirs)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    table = ablation_table(ablation)
    figures = inline_plots(collection, ablation)
    body = (f"<h1>{html.escape(title)}</h1>\n"
            f'<p class="note">{len(collection.runs)} completed run(s) from '
            f'{html.escape(", ".join(map(str, sweep_dirs)))}; written {now} by python -m analysis.report.</p>\n'
            + section("Differences to the reference", figures["forest"])
            + section("Ablation table", frame_html(table) + paragraphs(table_notes(ablation)))
            + section("Plots", "\n".join(figures[name] for name in PLOTS))
            + section("What varied and what was held fixed", config_section(results, factors))
            + section("Provenance", provenance_section(results))
            + section("Failed runs and duplicates", problems_section(collection)))
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n<script>{CHECK_SCRIPT}</script>\n</head>\n<body>\n{body}</body>\n</html>\n")


