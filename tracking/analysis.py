"""EVP curves and seed-median summaries from a trials table (tracking.store.load_trials)."""
from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from tracking.evp import Estimator, expected_max
from tracking.store import GROUP

Unit = Literal["trial", "assignment"]


def samples(trials: pd.DataFrame, unit: Unit) -> pd.DataFrame:
    """EVP's sample unit: every trial (assignment × seed), or each assignment's seed-median."""
    if unit == "trial":
        return trials
    if unit == "assignment":
        return (trials.groupby(GROUP + ["config_id"], as_index=False)
                .agg(best_dev_score=("best_dev_score", "median"), train_seconds=("train_seconds", "sum")))
    raise ValueError(f"unit: must be 'trial' or 'assignment' (got {unit!r})")


def evp_curves(trials: pd.DataFrame, *, unit: Unit = "trial", estimator: Estimator = "with-replacement",
               max_k: int | None = None) -> pd.DataFrame:
    """One row per task × method × backbone × k, for k = 1..N (or max_k)."""
    rows = []
    for (task, method, backbone), g in samples(trials, unit).groupby(GROUP, sort=True):
        v = g["best_dev_score"].to_numpy(dtype=float)
        ks = np.arange(1, (max_k or len(v)) + 1)
        mean, std = expected_max(v, ks, estimator)
        secs = float(g["train_seconds"].astype(float).mean())
        rows.append(pd.DataFrame({
            "task": task, "method": method, "backbone": backbone, "k": ks, "evp": mean, "evp_std": std,
            "n": len(v), "min": v.min(), "max": v.max(), "budget_seconds": ks * secs,
            "unit": unit, "estimator": estimator,
        }))
    return pd.concat(rows, ignore_index=True)


def summarize(trials: pd.DataFrame) -> pd.DataFrame:
    """Per task × method × backbone, the assignment with the best seed-median dev score, with
    the median and std (numpy's, ddof=0) over its seeds."""
    per_config = (trials.groupby(GROUP + ["config_id"], as_index=False)
                  .agg(median=("best_dev_score", "median"),
                       std=("best_dev_score", lambda s: float(np.std(s.astype(float)))),
                       n_seeds=("seed", "nunique"),
                       trainable_params=("trainable_params", "first")))
    best = per_config.sort_values(["median", "config_id"], ascending=[False, True]).groupby(GROUP).head(1)
    return best.sort_values(GROUP).reset_index(drop=True)


def markdown_table(summary: pd.DataFrame, metric_labels: dict[str, str] | None = None) -> str:
    """Methods × tasks, median ± std (×100) over seeds, with a Macro column (mean over tasks)."""
    tasks = sorted(summary["task"].unique())
    labels = metric_labels or {}
    head = ["method", "backbone"] + [f"{t.upper()} ({labels[t]})" if t in labels else t.upper() for t in tasks] + ["Macro"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (method, backbone), g in summary.groupby(["method", "backbone"], sort=True):
        by_task = g.set_index("task")
        cells = [f"{100 * by_task.at[t, 'median']:.1f} ± {100 * by_task.at[t, 'std']:.1f}"
                 if t in by_task.index else "–" for t in tasks]
        macro = f"{100 * by_task['median'].mean():.1f}" if len(by_task) == len(tasks) else "–"
        lines.append("| " + " | ".join([method, _short(backbone)] + cells + [macro]) + " |")
    return "\n".join(lines) + "\n"


def _short(backbone: str) -> str:
    return backbone.rstrip("/").split("/")[-1]
