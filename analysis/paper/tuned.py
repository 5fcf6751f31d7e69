"""An ablation whose rows are each tuned (``python -m src.tune``, experiments/ablations.yaml's ``tuning``): the
search per arm (its best recipe, how the shared recipe scored in it, what it cost beside an exhaustive grid), how
much of the chosen recipe's edge was selection noise (``src.tune recheck``), and each tuned row beside the same
fusion at the shared recipe (its ``shared`` ablation), seed by seed: did tuning change a row, and the ranking."""
import json
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pandas as pd
from scipy import stats

from analysis.runs.local import load_runs
from src.identity import identity
from src.train.record_io import RESULTS_FILE

from .ablations import AblationSpec
from .shipped import results_dir, results_root

STUDY_FILE, RECHECK_FILE = "study.json", "recheck.json"


def search_dir(ablation: AblationSpec) -> Path:
    return results_root() / ablation.tuning


def studies(ablation: AblationSpec) -> List[Dict]:
    """Each arm's study.json, in the ablation's row order (the reference first)."""
    found = [json.loads(path.read_text()) for path in sorted(search_dir(ablation).glob(f"*/{STUDY_FILE}"))]
    order = list(ablation.rows)
    return sorted(found, key=lambda summary: order.index(arm_value(summary)) if arm_value(summary) in order
                  else len(order))


def arm_value(summary: Dict) -> str:
    """``cross`` of the arm ``fusion=cross``."""
    return summary["arm"].split("=", 1)[-1]


def shared_trial(summary: Dict) -> Optional[Dict]:
    """Trial 0: the shared recipe, which every shipped study queues first."""
    return next((row for row in summary["trials"] if row["number"] == 0), None)


def search_table(ablation: AblationSpec) -> pd.DataFrame:
    """Per arm: the best trial's recipe and selection top-1, the shared recipe's (trial 0: its last value, or where
    it was pruned), the trials, and the search's and an exhaustive grid's trial-epochs and CPU hours."""
    rows = []
    for summary in studies(ablation):
        best, shared, totals, grid = summary["best"], shared_trial(summary), summary["totals"], summary["grid"]
        rows.append({
            "arm": arm_value(summary),
            "best trial": best["trial"] if best else None,
            "best recipe": " ".join(f"{key.split('.')[-1]}={value:.3g}" if isinstance(value, float) else
                                    f"{key.split('.')[-1]}={value}" for key, value in (best or {}).get("params",
                                                                                                        {}).items()),
            "best selection top-1": best["value"] if best else None,
            "shared recipe (trial 0)": shared_value(shared),
            "complete / pruned / failed": f"{totals['complete']} / {totals['pruned']} / {totals['fail']}",
            "trial-epochs": totals["trial_epochs"], "CPU h": totals["cpu_s"] / 3600,
            "grid trial-epochs": grid["trial_epochs"],
            "grid CPU h": grid["cpu_s"] / 3600 if grid["cpu_s"] is not None else None})
    return pd.DataFrame(rows)


def shared_value(trial: Optional[Dict]) -> str:
    if trial is None:
        return "-"
    if trial["state"] == "complete":
        return f"{trial['value']:.2f}"
    return f"{trial['state']} after epoch {trial['epochs']}" if trial["epochs"] else trial["state"]


def recheck_table(ablation: AblationSpec) -> Optional[pd.DataFrame]:
    """Each rechecked trial: its tuning value (seed 0), its new seeds' mean, and the gap (None: not rechecked)."""
    path = search_dir(ablation) / RECHECK_FILE
    if not path.is_file():
        return None
    rows = json.loads(path.read_text())
    return pd.DataFrame([{"arm": arm_value(row), "rank": row["rank"], "trial": row["trial"],
                          "tuning (seed 0)": row["tuning_value"],
                          "new seeds": ", ".join(f"{value:.2f}" for value in row["new_values"]),
                          "new mean": row["new_mean"], "tuning - new mean": row["curse"]} for row in rows])


def final_runs(folder: Path) -> pd.DataFrame:
    """(fusion, seed) -> the last epoch's top-1 of every completed run under ``folder``, and its job's identity
    (``src.identity``: what changes its numbers, less how it was run)."""
    runs = load_runs([folder], warn=lambda message: None).runs
    runs["identity"] = [identity(json.loads((Path(run_dir) / RESULTS_FILE).read_text())["config"])
                        for run_dir in runs["run_dir"]]
    return runs.set_index(["fusion", "seed"])[["top1", "identity"]]


def against_shared(ablation: AblationSpec) -> pd.DataFrame:
    """Each tuned row beside its fusion at the shared recipe, on the seeds both have: the two means, and each row's
    rank among these rows by those means (1: highest; both rankings on the same seeds, so a changed rank is tuning's
    doing, not the shared ablation's extra seeds'). Where the search chose another recipe: the paired difference
    with its 95% interval and p-value. Where it kept the shared recipe, the pairs are the same jobs and their
    difference is not tuning's: no test, and how many seeds came out identical (the others ran on another torch or
    CPU, and ``max |Δ|`` says how far floating-point order moved them)."""
    tuned, shared = final_runs(results_dir(ablation.name)), final_runs(results_dir(ablation.shared))
    pairs = {label: ablation.shared_rows.get(label, label) for label in ablation.rows}
    pairs = {label: other for label, other in pairs.items()
             if label in tuned.index.get_level_values(0) and other in shared.index.get_level_values(0)}
    rows = []
    for label, other in pairs.items():
        mine, theirs = tuned.loc[label], shared.loc[other]
        seeds = sorted(set(mine.index) & set(theirs.index))
        mine, theirs = mine.loc[seeds], theirs.loc[seeds]
        differences = (mine["top1"] - theirs["top1"]).to_numpy()
        same_jobs = bool(seeds) and bool((mine["identity"] == theirs["identity"]).all())
        low, high, p_value = (float("nan"),) * 3 if same_jobs else paired_interval(differences)
        rows.append({"row": label, "shared-recipe row": other, "seeds": len(seeds),
                     "tuned top-1": mine["top1"].mean(), "shared top-1": theirs["top1"].mean(),
                     "Δ tuned - shared": differences.mean(),
                     "95% CI": "-" if same_jobs else f"[{low:+.2f}, {high:+.2f}]", "p": p_value,
                     "same jobs": same_jobs, "identical seeds": int((differences == 0).sum()) if same_jobs else 0,
                     "max |Δ|": float(np.abs(differences).max()) if len(differences) else float("nan")})
    frame = pd.DataFrame(rows)
    for rank, mean in (("rank tuned", "tuned top-1"), ("rank shared", "shared top-1")):
        frame[rank] = frame[mean].rank(ascending=False, method="min").astype(int) if len(frame) else []
    return frame


def paired_interval(differences: np.ndarray):
    """The paired t 95% interval of the mean difference and its two-sided p-value (NaN with fewer than 2)."""
    if len(differences) < 2:
        return float("nan"), float("nan"), float("nan")
    result = stats.ttest_1samp(differences, 0.0)
    interval = result.confidence_interval(0.95)
    return float(interval.low), float(interval.high), float(result.pvalue)
