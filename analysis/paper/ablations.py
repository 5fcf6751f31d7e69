"""The paper's ablations and their CPU proxies, as ``experiments/ablations.yaml`` lists them: which preset each
runs, where the paper prints it, which of our rows stands for which paper row, and the notebook's text. The
index is shared with ``src.sweeps``: keys this module does not use are ignored."""
from dataclasses import dataclass, field, fields
from typing import Dict, List, Optional

import yaml

from analysis.stats.sequential import Design

from . import ROOT

SPEC_FILE = ROOT / "experiments" / "ablations.yaml"


@dataclass(frozen=True)
class AblationSpec:
    name: str
    title: str
    preset: str
    imagenet_preset: str  # the same ablation in the paper's setting
    paper_table: str
    paper_reference: str
    rows: Dict[str, Optional[str]]  # our row label -> the paper row it stands for (None: not in the paper)
    question: str
    proxy: str
    reading: str
    minutes: float
    notebook: str = ""
    paper_rows: List[str] = field(default_factory=list)
    # optional: show every row of paper_table, not only the rows ours stand for (Table 2: DeiT and CrossViT whole)
    whole_table: bool = False
    # optional: rows of the ImageNet preset the paper does not print (label -> overrides), counted beside its rows
    imagenet_rows: Dict[str, List[str]] = field(default_factory=dict)
    # optional: our rows joined by a line in the top-1 vs FLOPs plot (the single-scale curve)
    curve: List[str] = field(default_factory=list)
    # optional: the equivalence margin (top-1 points) and the sequential design its seeds were added under
    margin: Optional[float] = None
    design: Dict[str, object] = field(default_factory=dict)
    # optional, for an ablation whose rows are each tuned (python -m src.tune): the search's shipped summaries
    # (a folder under results/cpu), the shared-recipe ablation its rows are set beside, and our rows whose row there
    # has another label (the tuned paper form beside the shared recipe's modified one)
    tuning: Optional[str] = None
    shared: Optional[str] = None
    shared_rows: Dict[str, str] = field(default_factory=dict)

    @property
    def sequential_design(self) -> Optional[Design]:
        """The declared design (None: the seeds were run in one go, one look)."""
        return Design(**{key: tuple(value) if key == "looks" else value for key, value in self.design.items()}) \
            if self.design else None

    @property
    def reference_label(self) -> str:
        """Our row that stands for the paper's reference row: the one every other row is compared with."""
        labels = [label for label, row in self.rows.items() if row == self.paper_reference]
        if len(labels) != 1:
            raise ValueError(f"{SPEC_FILE.name}, {self.name}: {len(labels)} rows stand for the paper's reference "
                             f"row {self.paper_reference!r}; exactly one must")
        return labels[0]


# What an entry of the index sets (name, notebook and paper_rows follow from it), and what it may set.
OPTIONAL_KEYS = ("whole_table", "imagenet_rows", "curve", "margin", "design", "tuning", "shared", "shared_rows")
ENTRY_KEYS = [spec_field.name for spec_field in fields(AblationSpec)
              if spec_field.name not in ("name", "notebook", "paper_rows", *OPTIONAL_KEYS)]
# an entry may name its notebook (default: <name>_ablation)


def specs() -> Dict[str, AblationSpec]:
    entries = yaml.safe_load(SPEC_FILE.read_text())["ablations"]
    found = {}
    for name, entry in entries.items():
        missing = [key for key in ENTRY_KEYS if key not in entry]
        if missing:
            raise KeyError(f"{SPEC_FILE.name}, ablation {name}: no {', '.join(missing)}; every entry sets "
                           f"{', '.join(ENTRY_KEYS)}")
        unknown_curve = [label for label in entry.get("curve", []) if label not in entry["rows"]]
        if unknown_curve:
            raise KeyError(f"{SPEC_FILE.name}, ablation {name}: curve names {', '.join(unknown_curve)}, not among "
                           f"its rows ({', '.join(entry['rows'])})")
        paper_rows = [row for row in entry["rows"].values() if row is not None]
        found[name] = AblationSpec(
            name=name, notebook=entry.get("notebook", f"{name}_ablation"),
            paper_rows=list(dict.fromkeys([entry["paper_reference"], *paper_rows])),
            **{key: entry[key] for key in ENTRY_KEYS}, **{key: entry[key] for key in OPTIONAL_KEYS if key in entry})
    return found


def spec(name: str) -> AblationSpec:
    known = specs()
    if name not in known:
        raise KeyError(f"no ablation {name!r} in {SPEC_FILE.name}: pick from {', '.join(known)}")
    return known[name]
