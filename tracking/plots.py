"""EVP figures: one panel per task, one curve per method, mean ± std shaded and clipped to the
observed [min, max] (Dodge et al. 2019's convention)."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd


def plot_evp(curves: pd.DataFrame, path: Path, *, note: str | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted(curves["task"].unique())
    cols = min(3, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.4 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        for (method, backbone), g in curves[curves["task"] == task].groupby(["method", "backbone"]):
            lo = (g["evp"] - g["evp_std"]).clip(lower=g["min"], upper=g["max"])
            hi = (g["evp"] + g["evp_std"]).clip(lower=g["min"], upper=g["max"])
            label = method if curves["backbone"].nunique() == 1 else f"{method} ({backbone.split('/')[-1]})"
            line, = ax.plot(g["k"], g["evp"], marker="o", markersize=3, label=label)
            ax.fill_between(g["k"], lo, hi, alpha=0.2, color=line.get_color())
        ax.set_title(task.upper())
        ax.set_xlabel(f"hyperparameter assignments ({curves['unit'].iat[0]}s)")
        ax.set_ylabel("expected max dev score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    if note:
        fig.suptitle(note, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
