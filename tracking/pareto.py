"""The Pareto view of cost against quality: per task, each method's seed-median score at its best
assignment, with the interquartile range over seeds, against its costs: trainable parameters,
wall seconds per trial, peak training memory (GPU where the trials had one, else the trial
process's resident peak), inference time relative to finetune (the trials' timed pass over the
selection set in each method's inference form; NaN without a finetune on the task and
backbone), and GPU-hours of the whole search. The frontier is marked. Written as pareto.csv,
pareto.png and pareto.svg. Runs logged before trials measured memory and inference leave those
axes out."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tracking.analysis import Score, summarize, with_score

COSTS = {"trainable_params": "trainable parameters", "seconds_per_trial": "wall seconds per trial",
         "peak_memory_mb": "peak training memory (MB)", "inference_vs_finetune": "inference time / finetune's",
         "gpu_hours": "GPU-hours (whole search)"}
_COST_INPUTS = ("peak_rss_mb", "peak_gpu_mb", "inference_ms_per_example")


def pareto_points(trials: pd.DataFrame, *, score: Score = "selection") -> pd.DataFrame:
    t = with_score(trials, score)
    best = summarize(trials, score=score)[["task", "method", "backbone", "config_id"]]
    seeds = t.merge(best, on=["task", "method", "backbone", "config_id"])
    g = seeds.groupby(["task", "method", "backbone"])
    out = g.agg(median=("score", "median"), q25=("score", lambda s: s.quantile(0.25)),
                q75=("score", lambda s: s.quantile(0.75)), seeds=("seed", "nunique"),
                trainable_params=("trainable_params", "median")).reset_index()
    t = t.assign(**{c: t[c] if c in t else np.nan for c in _COST_INPUTS})
    t = t.assign(gpu_hours=t["wall_seconds"] * t["gpus"].fillna(0) / 3600,
                 peak_memory_mb=t["peak_gpu_mb"].where(t["peak_gpu_mb"].notna(), t["peak_rss_mb"]))
    cost = t.groupby(["task", "method", "backbone"])
    out = out.merge(cost.agg(seconds_per_trial=("wall_seconds", "median"), gpu_hours=("gpu_hours", "sum"),
                             peak_memory_mb=("peak_memory_mb", "median"),
                             inference_ms=("inference_ms_per_example", "median")).reset_index(),
                    on=["task", "method", "backbone"])
    finetune = out[out["method"] == "finetune"].set_index(["task", "backbone"])["inference_ms"]
    ref = pd.Series([finetune.get((a, b), np.nan) for a, b in zip(out["task"], out["backbone"])], index=out.index)
    out["inference_vs_finetune"] = out["inference_ms"] / ref
    for c in COSTS:
        out[f"frontier_{c}"] = _frontier(out, c)
    return out


def _frontier(points: pd.DataFrame, cost: str) -> pd.Series:
    """On the frontier: no other method of the task costs no more and scores at least as well,
    one of the two strictly."""
    flags = pd.Series(False, index=points.index)
    for _, g in points.groupby("task"):
        x, y = g[cost].to_numpy(dtype=float), g["median"].to_numpy(dtype=float)
        if np.isnan(x).all() or (cost == "gpu_hours" and not np.any(x > 0)):
            continue
        for i, idx in enumerate(g.index):
            dominated = np.any((x <= x[i]) & (y >= y[i]) & ((x < x[i]) | (y > y[i])))
            flags[idx] = not dominated
    return flags


def plot_pareto(points: pd.DataFrame, stem: Path, formats=("png", "svg")) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    costs = [c for c in COSTS if points[c].notna().any() and (c != "gpu_hours" or (points[c] > 0).any())]
    tasks = sorted(points["task"].unique())
    fig, axes = plt.subplots(len(tasks), len(costs), figsize=(4.4 * len(costs), 3.4 * len(tasks)), squeeze=False)
    for r, task in enumerate(tasks):
        p = points[points["task"] == task]
        for c, cost in enumerate(costs):
            ax = axes[r][c]
            for _, row in p.iterrows():
                on = row[f"frontier_{cost}"]
                ax.errorbar(row[cost], row["median"], yerr=[[row["median"] - row["q25"]], [row["q75"] - row["median"]]],
                            fmt="o" if on else "s", mfc=None if on else "none", capsize=3, label=row["method"])
                ax.annotate(row["method"], (row[cost], row["median"]), fontsize=7, xytext=(4, 4), textcoords="offset points")
            front = p[p[f"frontier_{cost}"]].sort_values(cost)
            ax.step(front[cost], front["median"], where="post", color="grey", lw=0.8, ls="--")
            if cost == "trainable_params" and (p[cost] > 0).all() and p[cost].max() / p[cost].min() > 50:
                ax.set_xscale("log")
            ax.set_xlabel(COSTS[cost])
            ax.set_ylabel("seed-median score (IQR)")
            ax.set_title(f"{task.upper()}: filled = frontier", fontsize=9)
            ax.grid(alpha=0.3)
    from tracking.plots import save_figure

    return save_figure(fig, stem, tuple(formats), dpi=110)


def write_pareto(points: pd.DataFrame, out: Path, formats=("csv", "png", "svg")) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = []
    if "csv" in formats:
        files.append(out / "pareto.csv")
        points.to_csv(files[-1], index=False)
    plots = tuple(f for f in ("png", "svg") if f in formats)
    if plots:
        files += plot_pareto(points, out / "pareto", plots)
    return files
