"""``python -m analysis.paper [--table 6] [--out FILE]``: every row of the paper's Tables 2 (CrossViT and its DeiT
baselines), 4, 6 and 7 (and the no-CLS model of Sec. 4.3) next to our model built from the same description: params
and GMACs, their relative difference, and whether they are within tolerance, as Markdown; with the paper's V100
throughput where it prints one (ours, on the device at hand, is ``python -m src.bench --parts throughput``).

The paper's numbers live in ``analysis/paper/crossvit_paper.yaml``; each row's model is built from its Hydra
overrides through the harness's own config tree, so the row we check is the row the presets train.
Tolerance: params within 2%; FLOPs within the paper's rounding (half its last printed digit) plus 2%.
"""
import argparse
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import pandas as pd
import torch
import yaml

from analysis.present.formatting import number, percent

from . import ROOT

PAPER_FILE = Path(__file__).with_name("crossvit_paper.yaml")
PARAMS_TOLERANCE = 0.02
FLOPS_TOLERANCE = 0.02


@dataclass
class PaperRow:
    table: str
    row: str
    overrides: List[str]
    params_m: Optional[float] = None
    gflops: Optional[float] = None
    top1: Optional[float] = None
    top1_l: Optional[float] = None
    top1_s: Optional[float] = None
    throughput: Optional[float] = None  # images/s, batch 64, one V100 (Tables 2 and 4)
    exception: Optional[str] = None


def paper_rows(path: Path = PAPER_FILE) -> List[PaperRow]:
    tables = yaml.safe_load(path.read_text())["tables"]
    return [PaperRow(table=str(table["table"]), **row) for table in tables for row in table["rows"]]


def compose_row(overrides: List[str]):
    """The run config of a row: the harness's config tree with the row's overrides, 1000 classes."""
    # Hydra and the models load when a row is measured: the notebooks and the side-by-side tables read rows only.
    from hydra import compose, initialize_config_dir

    from src.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=[*overrides, "data.num_classes=1000"])


@torch.no_grad()
def measure(overrides: List[str]) -> Dict[str, float]:
    """Params (M) and GMACs of the row's model, counted on the meta device."""
    from src.models import count_flops, count_params  # timm: as compose_row, only when a row is measured
    from src.train.build import build_model

    with torch.device("meta"):  # shapes only: no memory, no init, same counts (FLOPs follow the shapes)
        model = build_model(compose_row(overrides)).eval()
    return {"params_m": count_params(model) / 1e6,
            "gmacs": count_flops(model, (3, model.img_size, model.img_size))}


def printed_decimals(value: float) -> int:
    text = repr(float(value))
    return len(text.split(".")[1]) if "." in text else 0


def within_tolerance(row: PaperRow, ours: Dict[str, float]) -> Dict[str, Any]:
    """Relative differences and the verdict for one row (None where the paper gives no number)."""
    params_diff = None if row.params_m is None else ours["params_m"] / row.params_m - 1
    flops_diff = None if row.gflops is None else ours["gmacs"] / row.gflops - 1
    params_ok = params_diff is None or abs(params_diff) <= PARAMS_TOLERANCE
    flops_allowed = None if row.gflops is None else (0.5 * 10 ** -printed_decimals(row.gflops) +
                                                      FLOPS_TOLERANCE * row.gflops)
    flops_ok = row.gflops is None or abs(ours["gmacs"] - row.gflops) <= flops_allowed + 1e-9
    return {"params_diff": params_diff, "flops_diff": flops_diff, "params_ok": params_ok, "flops_ok": flops_ok,
            "ok": params_ok and flops_ok}


def measure_rows(rows: List[PaperRow]) -> pd.DataFrame:
    """One record per row: the paper's numbers, ours (``ours_params_m``, ``ours_gmacs``) and the verdict."""
    records = []
    for row in rows:
        ours = measure(row.overrides)
        records.append({**asdict(row), **{f"ours_{key}": value for key, value in ours.items()},
                        **within_tolerance(row, ours)})
    return pd.DataFrame(records)


def tolerance_verdict(record: pd.Series) -> str:
    if pd.isna(record["params_diff"]) and pd.isna(record["flops_diff"]):
        return "n/a (the paper gives top-1 only)" if not pd.isna(record["top1"]) else "n/a (not in the paper)"
    if record["ok"]:
        return "yes"
    missed = [name for name, ok in (("params", record["params_ok"]), ("FLOPs", record["flops_ok"])) if not ok]
    reason = record["exception"] if isinstance(record["exception"], str) else "unexplained"
    return f"no ({', '.join(missed)}): {reason}"


def measured_markdown(comparison: pd.DataFrame) -> str:
    """``measure_rows``' records as the Markdown table the CLI prints."""
    top1 = [number(r["top1"], 1) + (f" (L {r['top1_l']:.1f} / S {r['top1_s']:.1f})"
                                     if isinstance(r["top1_l"], float) and not math.isnan(r["top1_l"]) else "")
            for _, r in comparison.iterrows()]
    shown = pd.DataFrame({
        "table": comparison["table"], "row": comparison["row"],
        "our model": [" ".join(o for o in overrides) for overrides in comparison["overrides"]],
        "params (M) paper": comparison["params_m"].map(lambda v: number(v, 1)),
        "params (M) ours": comparison["ours_params_m"].map(lambda v: number(v, 2)),
        "Δ params": comparison["params_diff"].map(percent),
        "FLOPs (G) paper": comparison["gflops"].map(lambda v: number(v, printed_decimals(v) if v == v and v else 1)),
        "GMACs ours": comparison["ours_gmacs"].map(lambda v: number(v, 2)),
        "Δ FLOPs": comparison["flops_diff"].map(percent), "top-1 paper (L / S branch)": top1,
        "img/s paper (V100)": comparison["throughput"].map(lambda v: number(v, 0)),
        "within tolerance": [tolerance_verdict(r) for _, r in comparison.iterrows()]})
    return shown.to_markdown(index=False, disable_numparse=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m analysis.paper", description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="append", help="only these tables (2, 4, 6, 7, 'Sec. 4.3'); repeatable")
    parser.add_argument("--out", type=Path, help="also write the Markdown here")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    rows = paper_rows()
    if args.table:
        known = sorted({row.table for row in rows})
        unknown = sorted(set(args.table) - set(known))
        if unknown:
            print(f"error: no table {', '.join(unknown)} in {PAPER_FILE.name}: pick from {', '.join(known)}",
                  file=sys.stderr)
            return 2
        rows = [row for row in rows if row.table in args.table]
    comparison = measure_rows(rows)
    text = (f"CrossViT (arXiv 2103.14899 v2) vs our models: params within {PARAMS_TOLERANCE:.0%}, FLOPs within the "
            f"paper's rounding + {FLOPS_TOLERANCE:.0%} (GMACs, attention included)\n\n"
            f"{measured_markdown(comparison)}\n")
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    missed = comparison[~comparison["ok"] & comparison["exception"].isna()]
    return 1 if len(missed) else 0

