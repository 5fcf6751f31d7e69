"""``TrainState``: everything about a run's progress that a checkpoint must carry, as plain data."""
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class TrainState:
    epoch: int = 0  # the next epoch to run
    step: int = 0  # optimizer updates so far
    best_top1: float = -1.0
    best_top5: float = -1.0
    best_epoch: Optional[int] = None
    best_top1_branch: Optional[List[float]] = None  # each branch head alone at the best epoch, S first
    history: List[Dict[str, Any]] = field(default_factory=list)

    def record(self, row: Dict[str, Any]) -> bool:
        """Appends an epoch's row; returns True when it is the best top-1 so far."""
        self.history.append(row)
        self.epoch = row["epoch"] + 1
        if row["top1"] > self.best_top1:
            self.best_top1, self.best_top5, self.best_epoch = row["top1"], row["top5"], row["epoch"]
            self.best_top1_branch = row.get("top1_branch")
            return True
        return False

    def best(self) -> Optional[Dict[str, Any]]:
        if self.best_epoch is None:
            return None
        return {"top1": self.best_top1, "top5": self.best_top5, "epoch": self.best_epoch,
                "top1_branch": self.best_top1_branch}

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "TrainState":
        return cls(**values)
