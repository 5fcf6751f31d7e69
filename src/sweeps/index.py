"""experiments/ablations.yaml, the one index of the ablation presets: each of the paper's ablations names its CPU
preset (``preset``) and its ImageNet twin (``imagenet_preset``); ``other_ablations`` names the CPU presets of
ablations the paper does not report. Read here: what the sweep files and the README table need (the notebooks'
text is the analysis's)."""
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import yaml

ROOT = Path(__file__).resolve().parents[2]
INDEX = ROOT / "experiments" / "ablations.yaml"
PRESET_DIR = ROOT / "conf" / "experiment"


@dataclass(frozen=True)
class IndexedAblation:
    name: str
    title: str
    paper_table: Optional[str]  # "6", "7", "Sec. 4.3"; None: not in the paper
    preset: str  # the CPU-sized preset
    imagenet_preset: Optional[str]  # the paper's setting; None: no ImageNet twin
    minutes: float  # the CPU preset's sweep on 2 cores, one job per core

    @property
    def presets(self) -> List[str]:
        return [name for name in (self.imagenet_preset, self.preset) if name is not None]


def read_index(path: Path = INDEX, preset_dir: Path = PRESET_DIR) -> List[IndexedAblation]:
    """The index's entries, the paper's ablations first; an entry naming a preset conf/experiment lacks is an
    error."""
    spec = yaml.safe_load(path.read_text())
    ablations = [IndexedAblation(name, entry["title"], str(entry["paper_table"]), entry["preset"],
                                 entry["imagenet_preset"], entry["minutes"])
                 for name, entry in spec["ablations"].items()]
    ablations += [IndexedAblation(name, entry["title"], None, entry["preset"], None, entry["minutes"])
                  for name, entry in spec.get("other_ablations", {}).items()]
    missing = [preset for ablation in ablations for preset in ablation.presets
               if not (preset_dir / f"{preset}.yaml").is_file()]
    if missing:
        raise ValueError(f"{path.name} names presets conf/experiment does not have: {', '.join(missing)}; "
                         "fix the name or add conf/experiment/<name>.yaml")
    return ablations


def preset_names(ablations: List[IndexedAblation]) -> List[str]:
    """Every preset the index names, the ones that get a W&B sweep file."""
    return sorted({preset for ablation in ablations for preset in ablation.presets})  # a twin may be shared
