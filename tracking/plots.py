"""EVP figures like the AoT paper's: one panel per task, one curve per method. The band is the
bootstrap confidence interval when one was computed, else mean ± std clipped to the observed
[min, max] (Dodge et al. 2019's convention)."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

X_AXES = {  # --budget: (curve column, axis label)
    "assignments": ("k", "hyperparameter assignments ({unit}s)"),
    "seconds": ("budget_seconds", "compute budget (seconds of trial wall time)"),
    "gpu-hours": ("budget_gpu_hours", "compute budget (GPU-hours)"),
}


def plot_evp(curves: pd.DataFrame, stem: Path, *, budget: str = "assignments", note: str | None = None,
             formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """Write ``stem.png``/``stem.svg`` (the given formats) and return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    x, xlabel = X_AXES[budget]
    tasks = sorted(curves["task"].unique())
    cols = min(3, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.4 * rows + (0.4 if note else 0)), squeeze=False)
    several = curves["backbone"].nunique() > 1
    for ax, task in zip(axes.flat, tasks):
        for (method, backbone), g in curves[curves["task"] == task].groupby(["method", "backbone"]):
            _curve(ax, g, x, label=f"{method} ({backbone.rstrip('/').split('/')[-1]})" if several else method)
        ax.set_title(task.upper())
        if budget == "assignments":  # a count of trials: no 2.5 trials on the axis
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(xlabel.format(unit=curves["unit"].iat[0]))
        ax.set_ylabel(f"expected max {curves['score'].iat[0]} score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    if note:
        fig.suptitle(note, fontsize=9, wrap=True)
    fig.tight_layout()
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(f".{fmt}") for fmt in formats]
    for p in paths:
        fig.savefig(p, dpi=120)
    plt.close(fig)
    return paths


def _curve(ax, g: pd.DataFrame, x: str, *, label: str) -> None:
    if "ci_low" in g:
        lo, hi = g["ci_low"], g["ci_high"]
    else:
        lo = (g["evp"] - g["evp_std"]).clip(lower=g["min"], upper=g["max"])
        hi = (g["evp"] + g["evp_std"]).clip(lower=g["min"], upper=g["max"])
    line, = ax.plot(g[x], g["evp"], marker="o" if len(g) <= 30 else None, markersize=3, label=label)
    ax.fill_between(g[x], lo, hi, alpha=0.2, color=line.get_color())


def save_figure(fig, stem: Path, formats: tuple[str, ...], *, dpi: int = 120) -> list[Path]:
    """Write ``stem.<fmt>`` for each format, close the figure, return the paths."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(f".{f}") for f in formats]
    for p in paths:
        fig.savefig(p, dpi=dpi)
    plt.close(fig)
    return paths
