"""EVP curves and seed-median summaries from a trials table (tracking.store.load_trials)."""
from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from tracking.evp import Estimator, bootstrap_ci, budget_ticks, expected_max
from tracking.store import GROUP
from tracking.words import noun

Unit = Literal["trial", "assignment"]
Score = Literal["selection", "reported"]
Budget = Literal["assignments", "seconds", "gpu-hours"]
SCORE_COLUMNS = {"selection": "best_dev_score", "reported": "reported_score"}
SCORE_LABELS = {"selection": "selection score (best_dev_score: the dev score that picked the checkpoint)",
                "reported": "reported score (reported_score: the held-out reported set)"}
IID_ALGORITHMS = {"grid", "random"}


def with_score(trials: pd.DataFrame, score: Score) -> pd.DataFrame:
    """The trials with a ``score`` column: the selection or the reported score."""
    if score not in SCORE_COLUMNS:
        raise ValueError(f"score: must be 'selection' or 'reported' (got {score!r})")
    col = SCORE_COLUMNS[score]
    missing = int(trials[col].isna().sum()) if col in trials.columns else len(trials)
    if missing:
        raise ValueError(f"score: 'reported' needs the metric reported_score, which {missing} of "
                         f"{len(trials)} selected {noun('trial', len(trials))} lack (search with a held-out split protocol)")
    return trials.assign(score=trials[col].astype(float))


def samples(trials: pd.DataFrame, unit: Unit) -> pd.DataFrame:
    """EVP's sample unit: every trial (assignment × seed), or each assignment's seed-median. A
    sample's cost is its compute: one trial's wall time (its run's end - start), or the sum over
    an assignment's seeds."""
    seconds = trials["wall_seconds"].astype(float)
    t = trials.assign(seconds=seconds, gpu_seconds=seconds * trials["gpus"].fillna(0.0))
    if unit == "trial":
        return t
    if unit == "assignment":
        return (t.groupby(GROUP + ["config_id"], as_index=False)
                .agg(score=("score", "median"), seconds=("seconds", "sum"), gpu_seconds=("gpu_seconds", "sum")))
    raise ValueError(f"unit: must be 'trial' or 'assignment' (got {unit!r})")


def evp_curves(trials: pd.DataFrame, *, unit: Unit = "trial", estimator: Estimator = "with-replacement",
               max_k: int | None = None, score: Score = "selection", bootstrap: int = 0, seed: int = 0,
               level: float = 0.95) -> pd.DataFrame:
    """One row per task × method × backbone × k, for k = 1..N (or max_k; log-spaced past 300;
    the unbiased estimator stops at N), with the budget of k
    samples in seconds and GPU-hours (NaN where no GPU was used) and, with ``bootstrap`` > 0
    resamples, a percentile confidence interval [ci_low, ci_high]."""
    s = samples(with_score(trials, score), unit).sort_values(GROUP + ["score"], kind="stable")
    stats = s.groupby(GROUP, sort=True).agg(n=("score", "size"), min=("score", "min"), max=("score", "max"),
                                            seconds=("seconds", "mean"), gpu_seconds=("gpu_seconds", "mean"))
    scores = np.split(s["score"].to_numpy(dtype=float), np.cumsum(stats["n"].to_numpy())[:-1])
    parts: dict[str, list] = {c: [] for c in ("row", "k", "evp", "evp_std", "ci_low", "ci_high")}
    for j, n in enumerate(stats["n"].to_numpy()):  # arrays per group, one frame at the end
        top = min(max_k, n) if (max_k and estimator == "unbiased") else (max_k or n)
        ks = budget_ticks(int(n), int(top))
        mean, std = expected_max(scores[j], ks, estimator)
        parts["row"].append(np.full(ks.size, j))
        parts["k"].append(ks)
        parts["evp"].append(mean)
        parts["evp_std"].append(std)
        if bootstrap:
            lo, hi = bootstrap_ci(scores[j], ks, estimator, resamples=bootstrap, seed=seed, level=level)
            parts["ci_low"].append(lo)
            parts["ci_high"].append(hi)
    return _curves(stats, {c: np.concatenate(v) for c, v in parts.items() if v}).assign(
        unit=unit, estimator=estimator, score=score)


def _curves(stats: pd.DataFrame, cols: dict[str, np.ndarray]) -> pd.DataFrame:
    row, ks = cols.pop("row"), cols["k"]
    st = stats.reset_index().iloc[row].reset_index(drop=True)
    gpu_hours = np.where(st["gpu_seconds"] > 0, st["gpu_seconds"] / 3600, np.nan)
    out = pd.DataFrame({"task": st["task"], "method": st["method"], "backbone": st["backbone"], "k": ks,
                        "evp": cols["evp"], "evp_std": cols["evp_std"], "n": st["n"].astype(int), "min": st["min"],
                        "max": st["max"], "budget_seconds": ks * st["seconds"], "budget_gpu_hours": ks * gpu_hours})
    if "ci_low" in cols:
        out["ci_low"], out["ci_high"] = cols["ci_low"], cols["ci_high"]
    return out


def summarize(trials: pd.DataFrame, *, score: Score = "selection") -> pd.DataFrame:
    """Per task × method × backbone, the assignment with the best seed-median score, with
    the median and std (numpy's, ddof=0) over its seeds."""
    t = with_score(trials, score)
    g = t.groupby(GROUP + ["config_id"])
    per_config = g.agg(median=("score", "median"), n_seeds=("seed", "nunique"),
                       trainable_params=("trainable_params", "median"), metric=("metric", "first"))
    per_config["std"] = g["score"].std(ddof=0)  # ddof=0: a single seed has std 0, not NaN
    per_config = per_config.reset_index()
    best = per_config.sort_values(["median", "config_id"], ascending=[False, True]).groupby(GROUP).head(1)
    return best.assign(score=score).sort_values(GROUP).reset_index(drop=True)


def iid_note(trials: pd.DataFrame) -> str | None:
    """EVP treats assignments as i.i.d. draws: true of random search and of random search over a
    full grid, not of adaptive searches (TPE, Bayesian), whose curves are then only descriptive."""
    algos = sorted(set(trials["algorithm"].dropna()) - IID_ALGORITHMS) if "algorithm" in trials else []
    if not algos:
        return None
    return (f"Note: EVP assumes i.i.d. assignments; these trials come from a {'/'.join(algos)} search, "
            "so the curves are descriptive only.")
