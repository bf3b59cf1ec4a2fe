"""Counted nouns in the sentences and settings peftsearch prints: "1 trial", "3 trials", "1
GPU-hour", "0.5 GPU-hours". The one place that decides singular or plural."""
from __future__ import annotations

import re

_LAST_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?(?!.*\d)", re.IGNORECASE)


def noun(word: str, n, many: str | None = None) -> str:
    """``word`` after the number ``n`` as printed (an int, or text such as "1", "0.5", "1–4",
    "2, 8"): singular when the number it follows, the last one printed, is exactly 1 ("1
    trial", "0.5–1 GPU-hour"), otherwise the plural, ``many`` or ``word`` + "s"."""
    m = _LAST_NUMBER.search(str(n))
    return word if m is not None and m.group().lstrip("+") == "1" else (many or word + "s")


def count(n, word: str, many: str | None = None) -> str:
    """``n`` and its noun: count(1, "seed") == "1 seed", count("1/2", "seed") == "1/2 seeds"."""
    return f"{n} {noun(word, n, many)}"
