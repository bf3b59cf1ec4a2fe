"""EVP curves as files: CSV (one row per curve point) and JSON (one object per curve, with the
settings that produced it, so a figure can be redrawn without the database)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

CURVE_KEYS = ["task", "method", "backbone", "n", "min", "max"]
POINT_COLUMNS = ["k", "evp", "evp_std", "budget_seconds", "budget_gpu_hours", "ci_low", "ci_high"]


def curves_csv(curves: pd.DataFrame, path: Path, *, note: str | None) -> Path:
    curves.assign(note=note or "").to_csv(path, index=False)
    return path


def curves_json(curves: pd.DataFrame, path: Path, *, meta: dict) -> Path:
    points = [c for c in POINT_COLUMNS if c in curves.columns]
    out = []
    for keys, g in curves.groupby(CURVE_KEYS, sort=True):
        cols = {c: [_num(x) for x in g[c]] for c in points}
        out.append(dict(zip(CURVE_KEYS, (_num(k) for k in keys))) | cols)
    path.write_text(json.dumps(meta | {"curves": out}, indent=1))
    return path


def _num(x):
    """JSON has no NaN: missing values (no GPU, no interval) become null."""
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return None if np.isnan(x) else float(x)
    return x
