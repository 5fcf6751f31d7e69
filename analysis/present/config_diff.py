"""What varied across a set of runs and what was held fixed: each run's resolved config flattened to dotted keys
(``optim.lr``, ``model.patch_size``), then split into the keys with more than one value and the rest. A key
inside a config group whose choice varies (``fusion.layers`` where ``fusion.name`` does) is not listed as varied:
it follows the choice."""
import json
from typing import Any, Dict, List, Tuple

import pandas as pd


def flatten(config: Dict[str, Any], prefix: str = "") -> Dict[str, str]:
    """{"model": {"patch_size": [4, 8]}} -> {"model.patch_size": "[4,8]"}; every value as a short string."""
    flat: Dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return flat


def config_diff(configs: List[Dict[str, Any]]) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """(varied, fixed) over the runs' configs. varied: key, the values with how many runs had each (a key
    missing from some runs counts as "(absent)"); fixed: key, value. Both sorted by key."""
    flat = [flatten(config) for config in configs]
    keys = sorted({key for run in flat for key in run})
    varied, fixed = [], []
    for key in keys:
        values = pd.Series([run.get(key, "(absent)") for run in flat]).value_counts(sort=False)
        if len(values) > 1:
            counts = sorted(values.items(), key=lambda kv: str(kv[0]))
            shown = ", ".join(f"{value} ({count})" for value, count in counts)
            varied.append({"key": key, "values (runs)": shown})
        else:
            fixed.append({"key": key, "value": values.index[0]})
    switched = {row["key"].removesuffix(".name") for row in varied if row["key"].endswith(".name")}
    varied = [row for row in varied if not following_a_switch(row["key"], switched)]
    return (pd.DataFrame(varied, columns=["key", "values (runs)"]), pd.DataFrame(fixed, columns=["key", "value"]))


def following_a_switch(key: str, switched) -> bool:
    """``fusion.layers`` where ``fusion.name`` varies: the key changes with the group's choice (cross has layers,
    none has none), so listing it says that someone changed it, which nobody did."""
    return any(key.startswith(f"{group}.") and key != f"{group}.name" for group in switched)
