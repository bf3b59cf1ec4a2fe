"""Patience early stopping as a pure function of the metric history, with state to save and
restore (the shape of Lightning's EarlyStopping callback)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class EarlyStopping:
    patience: int
    mode: str = "max"
    best: float | None = None
    best_index: int = -1
    seen: int = 0

    def update(self, value: float) -> bool:
        """Record one evaluation; True when it is a new best. NaN never improves."""
        index, self.seen = self.seen, self.seen + 1
        if math.isnan(value):
            return False
        better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
        if better:
            self.best, self.best_index = value, index
        return better

    @property
    def should_stop(self) -> bool:
        """Stop after ``patience`` evaluations in a row without a new best."""
        return self.seen - 1 - self.best_index >= self.patience

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state_dict(cls, state: dict) -> "EarlyStopping":
        return cls(**state)
