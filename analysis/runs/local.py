"""Runs from ``results.json`` files (Hydra run and multirun dirs, searched recursively). Folders that are not a
finished run of ours are skipped with one warning line each: foreign files, partial runs (still running, or a
Hydra job that never started), corrupt JSON."""
import json
import logging
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

from src.train.record import RESULTS_FILE, SCHEMA, RunRecord

from .records import Collection, NoRunsError, record_to_row, split_by_status

log = logging.getLogger(__name__)
FAILED_STATUSES = ("failed", "interrupted")


def problem_with(record: Any) -> Optional[str]:
    """Why a parsed results.json cannot be collated, or None."""
    if not isinstance(record, dict) or "status" not in record or "config" not in record:
        return "foreign: not a results.json of src.run"
    if record.get("schema") != SCHEMA:
        return f"foreign: results schema {record.get('schema')!r}, expected {SCHEMA}"
    if record["status"] == "running":
        return "partial: status 'running' (still training, or killed before it could record why)"
    if record["status"] == "completed" and not isinstance(record.get("final"), dict):
        return "corrupt: status 'completed' but no final metrics"
    if record["status"] not in ("completed",) + FAILED_STATUSES:
        return f"foreign: unknown status {record['status']!r}"
    return None


def find_run_dirs(paths: Sequence[Path]) -> Tuple[List[Path], List[Tuple[str, str]]]:
    """Every results.json under ``paths``, and Hydra job dirs (with ``.hydra/``) that have none."""
    found, skipped = [], []
    for path in paths:
        if not path.exists():
            raise NoRunsError(f"{path} does not exist: give a Hydra run or multirun dir (e.g. multirun/make_run)")
        found += sorted(path.rglob(RESULTS_FILE)) if path.is_dir() else [path]
        for hydra_dir in sorted(path.rglob(".hydra")) if path.is_dir() else []:
            if not (hydra_dir.parent / RESULTS_FILE).exists():
                skipped.append((str(hydra_dir.parent), "partial: no results.json (the job never started)"))
    return found, skipped


def load_runs(paths: Sequence[Any], warn=log.warning) -> Collection:
    """Completed, failed and skipped runs under ``paths``; raises NoRunsError when there is no run at all."""
    paths = [Path(path) for path in paths]
    files, skipped = find_run_dirs(paths)
    rows = []
    for file in files:
        try:
            record: RunRecord = json.loads(file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            skipped.append((str(file.parent), f"corrupt: {RESULTS_FILE} is not valid JSON ({error})"))
            continue
        problem = problem_with(record)
        if problem:
            skipped.append((str(file.parent), problem))
            continue
        # Where the file is now, not where it was written: copies and moved sweeps name their own folder,
        # which is where val_predictions.npz is read from too.
        record["run_dir"] = str(file.parent)
        rows.append(record_to_row(record))
    for folder, why in skipped:
        warn(f"skipped {folder}: {why}")
    if not rows:
        looked = ", ".join(str(path) for path in paths)
        raise NoRunsError(f"no runs found: no readable {RESULTS_FILE} of src.run under {looked} "
                          f"({len(skipped)} folder(s) skipped)")
    return split_by_status(rows, skipped, warn)
