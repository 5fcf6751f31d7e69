"""Runs from ``results.json`` files (Hydra run and multirun dirs, searched recursively). Files and folders that
are not a finished run of ours are skipped with one warning line each, naming the file (or the folder) and why:
foreign files, partial runs (still running, or a Hydra job that never started), corrupt files (not JSON, not
UTF-8, empty) and malformed ones (a field of the wrong type, named by ``schema``)."""
import json
import logging
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

from src.train.record import SCHEMA, RunRecord
from src.train.record_io import RESULTS_FILE

from .records import Collection, NoRunsError, record_to_row, split_by_status
from .schema import field_problem, kind

log = logging.getLogger(__name__)
FAILED_STATUSES = ("failed", "interrupted")


def problem_with(record: Any) -> Optional[str]:
    """Why a parsed results.json cannot be collated, or None."""
    if not isinstance(record, dict):
        return f"foreign: the file holds {kind(record)}, not the JSON object src.run writes"
    if "status" not in record or "config" not in record:
        return "foreign: not a results.json of src.run (no status or config)"
    if record.get("schema") != SCHEMA:
        return f"foreign: results schema {record.get('schema')!r}, expected {SCHEMA}"
    malformed = field_problem(record)
    if malformed:
        return f"malformed: {malformed}"
    if record["status"] == "running":
        return "partial: status 'running' (still training, or killed before it could record why)"
    if record["status"] == "pruned":  # a tuning trial stopped early on purpose (src.tune): not a result
        return f"pruned: {record.get('reason') or 'a tuning trial stopped early by its pruner'}"
    if record["status"] == "completed" and not isinstance(record.get("final"), dict):
        return "corrupt: status 'completed' but no final metrics"
    if record["status"] not in ("completed",) + FAILED_STATUSES:
        return (f"foreign: unknown status {record['status']!r}, expected completed, failed, interrupted, pruned or "
                f"running")
    return None


def read_record(file: Path) -> Tuple[Optional[RunRecord], Optional[str]]:
    """(the parsed record, None), or (None, why it cannot be collated)."""
    try:
        text = file.read_bytes().decode("utf-8")
    except OSError as error:
        return None, f"corrupt: unreadable ({error})"
    except UnicodeDecodeError as error:
        return None, f"corrupt: not UTF-8 text ({error})"
    if not text.strip():
        return None, "corrupt: the file is empty"
    try:
        record = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        return None, f"corrupt: not valid JSON ({error})"
    problem = problem_with(record)
    return (None, problem) if problem else (record, None)


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
        record, problem = read_record(file)
        if problem:
            skipped.append((str(file), problem))
            continue
        # Where the file is now, not where it was written: copies and moved sweeps name their own folder,
        # which is where val_predictions.npz is read from too.
        record["run_dir"] = str(file.parent)
        try:
            rows.append(record_to_row(record))
        except (TypeError, ValueError, AttributeError, KeyError, IndexError) as error:
            # schema checks the fields the row reads; this catches what it cannot foresee (a config value
            # OmegaConf cannot resolve), so that one file never stops the table
            skipped.append((str(file), f"malformed: cannot be read as a run ({type(error).__name__}: {error})"))
    for folder, why in skipped:
        warn(f"skipped {folder}: {why}")
    if not rows:
        looked = ", ".join(str(path) for path in paths)
        see = ": see the warnings above" if skipped else ""
        raise NoRunsError(f"no runs found: no readable {RESULTS_FILE} of src.run under {looked} "
                          f"({len(skipped)} file(s) or folder(s) skipped{see})")
    return split_by_status(rows, skipped, warn, source=lambda run_dir: str(Path(run_dir) / RESULTS_FILE))
