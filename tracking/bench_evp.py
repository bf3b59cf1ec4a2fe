"""``peftsearch bench analytics --scaling``: time and peak memory of ``evp_curves`` alone, on
in-memory trial tables (no database), for one large group and for many groups of uneven sizes.

Peak memory is tracemalloc's peak during the call, above what was allocated before it (numpy
reports its buffers to tracemalloc), so it is the memory the analysis adds to the loaded data.
"""
from __future__ import annotations

import os
import time
import tracemalloc
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tracking.analysis import evp_curves
from trainers.machine import load_average


@dataclass(frozen=True)
class ScalingRow:
    case: str
    trials: int
    groups: int
    points: int
    seconds: float
    peak_mb: float


def trials_frame(sizes: list[int], *, seed: int = 0, decimals: int | None = 3) -> pd.DataFrame:
    """A trials table with one group (task × method × backbone) per size: scores from a beta
    distribution, rounded to ``decimals`` (accuracies on a dev set take few distinct values;
    None keeps them continuous: every score distinct, the worst case)."""
    rng = np.random.default_rng(seed)
    n = int(sum(sizes))
    group = np.repeat(np.arange(len(sizes)), sizes)
    score = rng.beta(8, 3, n)
    if decimals is not None:
        score = score.round(decimals)
    return pd.DataFrame({"task": "rte", "method": [f"m{g:04d}" for g in group], "backbone": "bench/minilm",
                         "config_id": [f"c{i}" for i in range(n)], "seed": 0, "best_dev_score": score,
                         "wall_seconds": rng.uniform(30, 90, n), "gpus": 0.0, "algorithm": "grid"})


def uneven_sizes(total: int, groups: int, *, seed: int = 0) -> list[int]:
    """``groups`` sizes summing to ``total``, spread between about a fifth and twice the mean."""
    w = np.random.default_rng(seed).uniform(0.2, 2.0, groups)
    sizes = np.maximum(1, np.floor(w / w.sum() * total)).astype(int)
    sizes[0] += total - sizes.sum()
    return sizes.tolist()


def measure(case: str, trials: pd.DataFrame, **kw) -> ScalingRow:
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    curves = evp_curves(trials, **kw)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    groups = trials.groupby(["task", "method", "backbone"]).ngroups
    return ScalingRow(case, len(trials), groups, len(curves), seconds, peak / 2**20)


def run_scaling(total: int = 100_000, groups: int = 1000, echo=print) -> list[ScalingRow]:
    cases = [
        (f"one group of {total:,} (scores to 3 decimals)", trials_frame([total])),
        (f"one group of {total:,} (continuous scores, all distinct)", trials_frame([total], decimals=None)),
        (f"{groups:,} uneven groups, {total:,} trials", trials_frame(uneven_sizes(total, groups))),
    ]
    rows = []
    for name, t in cases:
        rows.append(measure(name, t))
        echo(f"  {name}: {rows[-1].seconds:.2f}s")
    return rows


def scaling_table(rows: list[ScalingRow]) -> str:
    lines = ["| case | trials | groups | curve points | evp_curves (s) | peak memory above data (MB) |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.case} | {r.trials:,} | {r.groups:,} | {r.points:,} | {r.seconds:.2f} | {r.peak_mb:.0f} |"
              for r in rows]
    return "\n".join(lines + [f"(machine: {os.cpu_count()} CPUs, load average {load_average()} at the end)"])
