"""The machine a benchmark ran on, printed with its figures (no torch import)."""
from __future__ import annotations

import os


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, as ``"0.52 1.10 1.85"``, or ``"unknown"`` where the
    system does not report them."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except (AttributeError, OSError):
        return "unknown"
