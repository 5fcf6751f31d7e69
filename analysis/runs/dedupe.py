"""Each (config, seed) counted once: the same sweep collated twice (two copies of a folder, or a re-run into
a new folder under the collated parent) would otherwise count every seed twice and shrink every p-value.

Runs are the same run when their ``config_hash`` (sha256 of the resolved config, seed included) and seed are
equal. W&B rows carry no hash (None) and are never merged. The first copy in ``run_dir`` order is kept; one
warning names every folder of the group, and says "DIFFERENT metrics" when their final top-1 disagree (a
changed code version or a non-deterministic run, which the table would otherwise average silently).
"""
from typing import Callable, List

import numpy as np
import pandas as pd

KEY = ["config_hash", "seed"]


def describe_duplicates(copies: pd.DataFrame) -> str:
    folders = ", ".join(str(folder) for folder in copies["run_dir"])
    top1 = pd.to_numeric(copies["top1"], errors="coerce").to_numpy(dtype=float)
    same_metrics = np.allclose(top1, top1[0], rtol=0, atol=1e-9, equal_nan=True)
    identity = f"config hash {str(copies['config_hash'].iloc[0])[:12]}, seed {copies['seed'].iloc[0]}"
    kept = f"counted once (kept {copies['run_dir'].iloc[0]})"
    if same_metrics:
        return f"the same run ({identity}) is in {len(copies)} folders: {folders}; {kept}"
    values = ", ".join(f"{value:g}" for value in top1)
    return (f"DIFFERENT metrics for the same run ({identity}): final top-1 {values} in {len(copies)} folders: "
            f"{folders}; {kept}: check for a changed code version or a non-deterministic run")


def drop_duplicate_runs(runs: pd.DataFrame, warn: Callable[[str], None]) -> pd.DataFrame:
    """``runs`` with each (config_hash, seed) once (first by run_dir), one warning per duplicated run."""
    if runs.empty or not set(KEY) <= set(runs.columns):
        return runs
    ordered = runs.sort_values("run_dir", kind="stable")
    hashed = ordered[ordered["config_hash"].notna()]
    key = hashed["config_hash"].astype(str) + "\x00" + hashed["seed"].astype(str)
    duplicated_keys: List[str] = key[key.duplicated(keep=False)].unique().tolist()
    for value in duplicated_keys:
        warn(describe_duplicates(hashed[key == value]))
    dropped = key[key.duplicated(keep="first")].index
    return ordered.drop(index=dropped).reset_index(drop=True)
