"""The machine a benchmark ran on, printed with its figures (no torch import)."""
from __future__ import annotations

import math
import os


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, as ``"0.52 1.10 1.85"``, or ``"unknown"`` where the
    system does not report them."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except (AttributeError, OSError):
        return "unknown"


# Durations read from the environment, and their defaults (seconds).
RAY_START_TIMEOUT_ENV = "PEFTSEARCH_RAY_START_TIMEOUT"  # a loaded machine needs more than Ray's fixed 30
TRACKING_RETRY_ENV = "PEFTSEARCH_TRACKING_RETRY_S"  # how long one logging call retries a store that is down
ENV_SECONDS = {RAY_START_TIMEOUT_ENV: 180.0, TRACKING_RETRY_ENV: 900.0}


def env_seconds(name: str) -> float:
    """One of ENV_SECONDS: a finite number of seconds, 0 or more, or its default where it is unset
    or empty; anything else (text, a negative number, inf, nan) is ValueError naming the variable."""
    text = os.environ.get(name, "")
    if not text.strip():
        return ENV_SECONDS[name]
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise ValueError(f"{name}: must be a finite number of seconds, 0 or more, got {text!r}")
    return value


def check_env_seconds() -> None:
    """Every duration of ENV_SECONDS, at the edge (before anything starts)."""
    for name in ENV_SECONDS:
        env_seconds(name)
