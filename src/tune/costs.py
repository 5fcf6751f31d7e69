"""``OUT/ARM/study.json``: every trial of an arm's study (number, state, params, value, epochs, wall and CPU
seconds, run dir, why it failed or was pruned), the best trial with the Hydra overrides of its recipe, the search's
totals, and what an exhaustive grid over the space's ``grid`` values at the full epoch count would have cost.

Trial-epochs count the epochs trained: each run dir's epochs once (a retried or repeated trial resumes or skips
its run dir; it does not train those epochs again). CPU seconds are each launch's own (its process and its loader
processes, user + system); a launch whose worker was killed took its CPU time with it, so the total is a floor.
The grid's CPU time is its trial-epochs at the mean CPU seconds per epoch of the completed trials (which pay a
process start each, as a grid's runs would).
"""
import json
import math
from typing import Any, Dict, List, Optional

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from src.train.files import write_atomic

from .check import ArmPlan
from .overrides import override, recipe_overrides
from .space import Space

STUDY_FILE = "study.json"


def retried_as(trials: List[FrozenTrial]) -> Dict[int, int]:
    """A lost trial's number -> the number of the trial that retried it."""
    return {trial.system_attrs["retry_history"][-1]: trial.number for trial in trials
            if trial.system_attrs.get("retry_history")}


def trial_row(trial: FrozenTrial, retry: Optional[int]) -> Dict[str, Any]:
    attrs = trial.user_attrs
    reason = attrs.get("reason")
    if retry is not None:
        reason = f"{reason or 'lost (no heartbeat)'}: retried as trial {retry}"
    return {"number": trial.number, "state": trial.state.name.lower(), "params": trial.params, "value": trial.value,
            "epochs": attrs.get("epochs"), "epochs_trained": attrs.get("epochs_trained"),
            "wall_s": attrs.get("wall_s"), "cpu_s": attrs.get("cpu_s"), "run_dir": attrs.get("run_dir"),
            "reason": reason, "worker": attrs.get("worker")}


def best_trial(space: Space, plan: ArmPlan, trials: List[FrozenTrial]) -> Optional[Dict[str, Any]]:
    """The complete trial of the highest value (the earliest of equals), with its recipe's overrides."""
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    if not complete:
        return None
    best = max(complete, key=lambda trial: (trial.value, -trial.number))
    return {"trial": best.number, "value": best.value, "params": best.params,
            "overrides": recipe_overrides(space.base, plan.arm, best.params),
            "run_dir": best.user_attrs.get("run_dir")}


def totals(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    epochs_by_run: Dict[str, int] = {}
    for row in rows:
        if row["run_dir"] and row["epochs"] is not None:
            epochs_by_run[row["run_dir"]] = max(epochs_by_run.get(row["run_dir"], 0), row["epochs"])
    counts = {state: sum(row["state"] == state for row in rows) for state in ("complete", "pruned", "fail", "running",
                                                                             "waiting")}
    return {**counts, "trial_epochs": sum(epochs_by_run.values()),
            "cpu_s": round(sum(row["cpu_s"] or 0 for row in rows), 1),
            "wall_s": round(sum(row["wall_s"] or 0 for row in rows), 1)}


def grid_cost(space: Space, plan: ArmPlan, rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    points = space.grid_points()
    trained = [row for row in rows if row["state"] == "complete" and row["epochs_trained"] and row["cpu_s"]]
    per_epoch = (sum(row["cpu_s"] for row in trained) / sum(row["epochs_trained"] for row in trained)
                 if trained else None)
    trial_epochs = None if points is None else points * plan.epochs
    return {"points": points, "epochs": plan.epochs, "trial_epochs": trial_epochs,
            "cpu_s_per_epoch": None if per_epoch is None else round(per_epoch, 3),
            "cpu_s": None if trial_epochs is None or per_epoch is None else round(trial_epochs * per_epoch, 1),
            "note": None if points is not None else "a float key has no grid: give one to compare"}


def study_summary(space: Space, plan: ArmPlan, study: optuna.Study) -> Dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    retries = retried_as(trials)
    rows = [trial_row(trial, retries.get(trial.number)) for trial in trials]
    return {"study": plan.study, "space": space.name, "arm": plan.label, "metric": space.metric,
            "budget": space.trials, "storage": space.storage, "pruner": space.pruner, "sampler": space.sampler,
            "best": best_trial(space, plan, trials), "totals": totals(rows), "grid": grid_cost(space, plan, rows),
            "trials": rows}


def write_summary(space: Space, plan: ArmPlan, study: optuna.Study) -> Dict[str, Any]:
    summary = study_summary(space, plan, study)
    text = json.dumps(summary, indent=2, default=str) + "\n"
    write_atomic(plan.folder / STUDY_FILE, lambda file: file.write(text.encode()))
    return summary


def summary_table(summary: Dict[str, Any]) -> str:
    """The trials as a Markdown table, then the totals and the grid's cost on two lines."""
    frame = pd.DataFrame([{"trial": row["number"], "state": row["state"], summary["metric"]: rounded(row["value"], 2),
                           "epochs": row["epochs"], "cpu s": rounded(row["cpu_s"], 1), **row["params"]}
                          for row in summary["trials"]], dtype=object).fillna("-")
    total, grid, best = summary["totals"], summary["grid"], summary["best"]
    if best is None:
        best_line = "best: no complete trial yet"
    else:
        best_line = (f"best: trial {best['trial']}, {summary['metric']} {best['value']:.2f}: "
                     + " ".join(override(key, value) for key, value in best["params"].items()))
    table = frame.to_markdown(index=False, floatfmt="g") if len(frame) else "(no trials)"
    lines = [f"## {summary['study']}", table, best_line,
             f"search: {total['complete']} complete, {total['pruned']} pruned, {total['fail']} failed; "
             f"{total['trial_epochs']} trial-epochs, {hours(total['cpu_s'])} CPU h",
             f"grid: {grid['points'] or '-'} points x {grid['epochs']} epochs = {grid['trial_epochs'] or '-'} "
             f"trial-epochs, {hours(grid['cpu_s'])} CPU h"]
    return "\n".join(lines)


def rounded(value: Optional[float], digits: int) -> Optional[float]:
    return None if value is None else round(value, digits)


def hours(seconds: Optional[float]) -> str:
    return "-" if seconds is None or math.isnan(seconds) else f"{seconds / 3600:.3g}"
