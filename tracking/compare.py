"""``peftsearch compare``: for each task and each pair of methods (or each method against a
baseline), which is better, at which budget, and how sure we are.

- Over seeds, at each method's best assignment (best seed-median): ASO's ε_min both ways
  (tracking.significance.aso, Bonferroni over the pairs compared), a permutation test of the
  difference in medians (Holm-adjusted across tasks and pairs) with a bootstrap interval, and the
  seeds a test at that level needs for 80% power at the observed effect.
- Over budgets: at each k, the expected best score of each method and the bootstrap probability
  that A's exceeds B's; the k where the curves cross; the budgets at which one wins (P(A > B) >=
  level and a permutation max-statistic test over all budgets at once: budget_comparison).
  Under a compute budget (``budget`` seconds or gpu-hours) each method gets the draws its own
  mean cost per sample buys, and the test is a bootstrap-t simultaneous band instead
  (tracking.cost_budgets: with unequal costs the permutation's exchangeability does not hold).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from tracking.analysis import Budget, Score, Unit, samples, summarize, with_score
from tracking.evp import CITATIONS, Estimator, budget_ticks, expected_max, resampled_means
from tracking.fairness import Finding, audit
from tracking.significance import aso, holm, median_test, seeds_for_power
from tracking.words import count, noun

ARM = ["method", "backbone"]


@dataclass(frozen=True)
class CompareOptions:
    unit: Unit = "trial"
    estimator: Estimator = "with-replacement"
    score: Score = "selection"
    baseline: str | None = None
    max_k: int | None = None
    resamples: int = 1000      # bootstrap resamples for P(A > B) at each budget
    level: float = 0.95        # the P(A > B) needed to call a winner at a budget; ASO's confidence
    alpha: float = 0.05        # family-wise level of the median tests and of the compute-budget band
    aso_bootstrap: int = 1000
    seed: int = 0
    budget: Budget = "assignments"  # a count of samples (unit), or compute: "seconds", "gpu-hours"
    budget_points: int = 40         # log-spaced budgets compared under a compute budget


@dataclass
class Comparison:
    pairs: pd.DataFrame                     # one row per task × pair
    budgets: pd.DataFrame                   # one row per task × pair × k
    findings: list[Finding] = field(default_factory=list)
    options: CompareOptions = CompareOptions()
    note: str | None = None

    @property
    def sentences(self) -> list[str]:
        return list(self.pairs["sentence"])


def arm_labels(trials: pd.DataFrame):
    several = trials["backbone"].nunique() > 1
    return lambda arm: f"{arm[0]} ({arm[1].rstrip('/').split('/')[-1]})" if several else arm[0]


def pairs_of(trials: pd.DataFrame, baseline: str | None) -> list[tuple[str, tuple, tuple]]:
    """(task, A, B) for each task's pairs of arms; with a baseline, every other arm against it."""
    out = []
    for task, g in trials.groupby("task", sort=True):
        arms = sorted(set(map(tuple, g[ARM].drop_duplicates().to_numpy())))
        if baseline is not None:
            base = [a for a in arms if a[0] == baseline]
            if not base:
                raise ValueError(f"baseline: no method {baseline!r} on task {task} "
                                 f"(methods: {', '.join(sorted({a[0] for a in arms}))})")
            out += [(task, a, b) for b in base for a in arms if a[0] != baseline]
        else:
            out += [(task, a, b) for a, b in combinations(arms, 2)]
    if not out:
        raise ValueError("compare: needs at least two methods on one task (found one per task)")
    return out


def compare(trials: pd.DataFrame, options: CompareOptions | None = None, *, note: str | None = None) -> Comparison:
    o = options or CompareOptions()
    t = with_score(trials, o.score)
    pairs = pairs_of(t, o.baseline)
    label = arm_labels(t)
    best = summarize(trials, score=o.score).set_index(["task"] + ARM)["config_id"]
    seeds = {key: g.sort_values("seed")["score"].to_numpy() for key, g in t.groupby(["task"] + ARM + ["config_id"])}
    evp_samples = {key: (g["score"].to_numpy(), _cost(g, o.budget)) for key, g in samples(t, o.unit).groupby(["task"] + ARM)}
    if o.budget != "assignments":  # a bad budget fails here, before any test runs
        for task, a, b in pairs:
            _check_costs({label(x): evp_samples[(task, *x)][1] for x in (a, b)}, o, task)
    rows, budget_rows, oriented = [], [], []
    m = len(pairs)
    for i, (task, a, b) in enumerate(pairs):
        sa, sb = seeds[(task, *a, best[(task, *a)])], seeds[(task, *b, best[(task, *b)])]
        if o.baseline is None and np.median(sb) > np.median(sa):   # A is the one ahead on seeds
            a, b, sa, sb = b, a, sb, sa
        oriented.append((task, a, b))
        row = _over_seeds(sa, sb, o, m, seed=o.seed + i)
        curve, summary = over_budgets(evp_samples[(task, *a)], evp_samples[(task, *b)], o, seed=o.seed + i)
        budget_rows.append(curve.assign(task=task, a=label(a), b=label(b)))
        rows.append({"task": task, "a": label(a), "b": label(b), "method_a": a[0], "method_b": b[0],
                     "backbone_a": a[1], "backbone_b": b[1]} | row | summary)
    out = pd.DataFrame(rows)
    counts = ("a_wins_from_k", "b_wins_from_k") if o.budget == "assignments" else ()
    for col in counts + ("seeds_for_80_power",):
        out[col] = out[col].astype("Int64")  # None stays missing, not NaN in a float column
    out["p_holm"] = holm(out["p_value"].to_numpy())
    out["significant"] = out["p_holm"] <= o.alpha
    findings = audit(t, oriented, label)
    out["fairness_findings"] = [sum(f.task == r.task and {f.a, f.b} == {r.a, r.b} for f in findings)
                                for r in out.itertuples()]
    out["sentence"] = [sentence(r, o) for r in out.itertuples()]
    budgets = pd.concat(budget_rows, ignore_index=True)[["task", "a", "b"] + budget_columns(o)]
    if o.budget != "assignments":
        out["budget_unit"] = budgets["budget_unit"] = BUDGET_UNITS[o.budget]
    return Comparison(out, budgets, findings, o, note)


BUDGET_NOUNS = {"seconds": "second", "gpu-hours": "GPU-hour"}     # one of each; words.count pluralises
BUDGET_UNITS = {b: noun(w, 2) for b, w in BUDGET_NOUNS.items()}   # the unit as a label: "seconds"


def budget_columns(o: CompareOptions) -> list[str]:
    """The columns of Comparison.budgets: ``k`` is the budget (a count, or seconds / GPU-hours);
    under a compute budget n_a and n_b are the draws each method's mean cost buys there."""
    return ["k"] + (["n_a", "n_b"] if o.budget != "assignments" else []) + [
        "evp_a", "evp_b", "p_a_beats_b", "t", "a_wins", "b_wins"]


def _cost(g: pd.DataFrame, budget: Budget) -> np.ndarray:
    """Each sample's cost, defined as ``evp --budget`` defines it (tracking.analysis.samples):
    its wall seconds, or its GPU-hours (wall seconds × GPUs / 3600)."""
    return (g["gpu_seconds"] / 3600 if budget == "gpu-hours" else g["seconds"]).to_numpy(dtype=float)


def _check_costs(costs: dict[str, np.ndarray], o: CompareOptions, task: str) -> None:
    from tracking.cost_budgets import budget_grid

    for arm, c in costs.items():
        if not (np.isfinite(c).all() and c.mean() > 0):
            need = ("trials that ran on GPUs (tag peftsearch.gpus > 0)" if o.budget == "gpu-hours"
                    else "each trial's wall time (start and end)")
            raise ValueError(f"budget: {o.budget!r} needs {need}; {arm} on {task} has a mean cost of {c.mean():.4g}")
    try:
        budget_grid(*costs.values(), max_k=o.max_k, points=o.budget_points)
    except ValueError as e:
        raise ValueError(f"{e} ({task}: {' vs '.join(costs)})") from e


def over_budgets(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], o: CompareOptions, *,
                 seed: int) -> tuple[pd.DataFrame, dict]:
    """(scores, costs) of A and B: budget_comparison over a count, or over seconds / GPU-hours."""
    if o.budget == "assignments":
        return budget_comparison(a[0], b[0], o, seed=seed)
    from tracking.cost_budgets import cost_budget_comparison

    return cost_budget_comparison(a[0], a[1], b[0], b[1], o, seed=seed)


def _over_seeds(sa: np.ndarray, sb: np.ndarray, o: CompareOptions, m: int, *, seed: int) -> dict:
    test = median_test(sa, sb, seed=seed)
    kw = dict(confidence=o.level, num_comparisons=m, bootstrap=o.aso_bootstrap, seed=seed)
    needed, power = seeds_for_power(sa, sb, alpha=o.alpha / m, seed=seed)
    return {"seeds_a": sa.size, "seeds_b": sb.size, "median_a": float(np.median(sa)), "median_b": float(np.median(sb)),
            "diff": test.diff, "diff_ci_low": test.ci_low, "diff_ci_high": test.ci_high, "p_value": test.p_value,
            "exact_permutation": test.exact, "aso_eps_a_over_b": aso(sa, sb, **kw), "aso_eps_b_over_a": aso(sb, sa, **kw),
            "seeds_for_80_power": needed, "power_tried": max(power) if power else None}


def budget_comparison(va, vb, o: CompareOptions, *, seed: int) -> tuple[pd.DataFrame, dict]:
    """EVP of A and B at each budget k (up to the smaller N, or max_k) and the bootstrap
    P(A > B) at each k. Calling a winner at k takes two things: P(A > B) >= level (or <= 1 -
    level for B), and a permutation test over all budgets at once: the labels A/B are shuffled
    ``resamples`` times, and the observed |EVP_A - EVP_B| / sd must pass the 1 - alpha/2 quantile
    of the shuffles' largest such ratio over k. That max-statistic bounds the chance of calling
    any budget for two identical distributions, however many budgets are compared."""
    va, vb = np.asarray(va, dtype=float), np.asarray(vb, dtype=float)
    top = min(va.size, vb.size)
    ks = budget_ticks(top, min(o.max_k, top) if o.max_k else top)
    ea, eb = expected_max(va, ks, o.estimator)[0], expected_max(vb, ks, o.estimator)[0]
    ba = resampled_means(va, ks, o.estimator, resamples=o.resamples, seed=seed)
    bb = resampled_means(vb, ks, o.estimator, resamples=o.resamples, seed=seed + 10_007)
    p = np.mean(ba > bb, axis=0) + 0.5 * np.mean(ba == bb, axis=0)
    d = ea - eb
    null = _permuted_differences(va, vb, ks, o, seed=seed + 20_011)
    sd = null.std(axis=0)
    safe = np.where(sd > 0, sd, 1.0)
    # The 1 - alpha/2 quantile: at 1 - alpha this test called 7.5% of 200 pairs of identical
    # distributions (N = 50) at some budget, more than alpha; at 1 - alpha/2 it stays under alpha.
    critical = float(np.quantile(np.where(sd > 0, np.abs(null) / safe, 0.0).max(axis=1), 1 - o.alpha / 2))
    t = np.where(sd > 0, d / safe, np.sign(d) * np.inf * (np.abs(d) > 1e-12))
    curve = pd.DataFrame({"k": ks, "evp_a": ea, "evp_b": eb, "p_a_beats_b": p, "t": np.nan_to_num(t),
                          "a_wins": (t > critical) & (p >= o.level), "b_wins": (t < -critical) & (p <= 1 - o.level)})
    return curve, _budget_summary(curve) | {"critical_t": critical}


def _permuted_differences(va: np.ndarray, vb: np.ndarray, ks: np.ndarray, o: CompareOptions, *, seed: int) -> np.ndarray:
    """(P, K): EVP_A - EVP_B for P random relabellings of the pooled samples."""
    from tracking.evp import rank_weights

    pooled = np.concatenate([va, vb])
    order = np.argsort(np.random.default_rng(seed).random((o.resamples, pooled.size)), axis=1)
    pa = np.sort(pooled[order[:, :va.size]], axis=1)
    pb = np.sort(pooled[order[:, va.size:]], axis=1)
    return pa @ rank_weights(va.size, ks, o.estimator).T - pb @ rank_weights(vb.size, ks, o.estimator).T


def _from_k(ks: np.ndarray, ok: np.ndarray, cost: bool = False) -> int | float | None:
    """The smallest k from which ``ok`` holds at every budget up to the largest."""
    if not ok.size or not ok[-1]:
        return None
    bad = np.flatnonzero(~ok)
    k = ks[bad[-1] + 1] if bad.size else ks[0]
    return float(k) if cost else int(k)


def budget_label(b: float) -> str:
    """A cost budget as a paper would print it: 3 significant figures, whole numbers from 100."""
    return f"{b:,.0f}" if b >= 100 else f"{b:.3g}"


def _budget_summary(c: pd.DataFrame, *, cost: bool = False) -> dict:
    """Where the curves cross and from which budget each side wins. Over a count of trials a
    crossing is the first k with the new sign; over a compute budget (a log grid of real budgets)
    it is interpolated, linearly in log b, between the budgets either side, and the budgets where
    one side wins are listed as ranges of the grid ("120–480")."""
    ks, d = c["k"].to_numpy(), (c["evp_a"] - c["evp_b"]).to_numpy()
    sign = np.sign(np.where(np.abs(d) < 1e-12, 0, d))
    nz = np.flatnonzero(sign)
    at = lambda i, j: float(ks[i] * (ks[j] / ks[i]) ** (d[i] / (d[i] - d[j])))  # noqa: E731
    crossings = [at(i, j) if cost else int(ks[j]) for i, j in zip(nz[:-1], nz[1:]) if sign[i] != sign[j]]
    show = budget_label if cost else str
    a_win, b_win = c["a_wins"].to_numpy(), c["b_wins"].to_numpy()
    p = c["p_a_beats_b"].to_numpy()
    a_from, b_from = _from_k(ks, a_win, cost), _from_k(ks, b_win, cost)
    return ({"k_min": float(ks[0])} if cost else {}) | {
        "k_max": float(ks[-1]) if cost else int(ks[-1]), "crossing_k": ";".join(map(show, crossings)),
        "a_wins_from_k": a_from, "b_wins_from_k": b_from, "a_wins_at": _ranges(ks, a_win, show), "b_wins_at": _ranges(ks, b_win, show),
        "p_min_a_wins": float(p[ks >= a_from].min()) if a_from else None,
        "p_max_b_wins": float(p[ks >= b_from].max()) if b_from else None,
        "p_at_k_max": float(p[-1])}


def _ranges(ks: np.ndarray, ok: np.ndarray, show=budget_label) -> str:
    """The runs of consecutive budgets compared where ``ok`` holds, as "lo–hi;lo–hi" (``show``
    prints one budget)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], ok.astype(int), [0]])))
    return ";".join(show(ks[i]) if i == j - 1 else f"{show(ks[i])}–{show(ks[j - 1])}"
                    for i, j in zip(edges[::2], edges[1::2]))


def sentence(r, o: CompareOptions) -> str:
    """One sentence per pair that a paper could quote."""
    cost = o.budget != "assignments"
    unit = BUDGET_NOUNS[o.budget] if cost else o.unit  # singular: count() makes "1 trial", "3 trials"
    num = budget_label if cost else str
    at = (lambda k: count(budget_label(k), unit)) if cost else (lambda k: f"k = {k}")  # noqa: E731
    up_to = (lambda: f"up to {count(r.k_max, unit)}") if not cost else (  # noqa: E731
        lambda: f"from {budget_label(r.k_min)} to {count(budget_label(r.k_max), unit)}"
        if budget_label(r.k_max) != budget_label(r.k_min) else f"of {count(budget_label(r.k_max), unit)}, the only one compared")
    task = r.task.upper()
    seeds = r.seeds_a if r.seeds_a == r.seeds_b else f"{r.seeds_a}/{r.seeds_b}"
    aso_part = f"ASO ε_min = {r.aso_eps_a_over_b:.2f} over {count(seeds, 'seed')}"
    sig = (f"seed-median difference {100 * r.diff:+.1f} points, p = {r.p_holm:.2g} Holm-adjusted"
           + ("" if r.significant else (f", {count(r.seeds_for_80_power, 'seed')} would give 80% power"
                                        if pd.notna(r.seeds_for_80_power) else ", 80% power not reached with 50 seeds")))
    if pd.notna(r.a_wins_from_k):
        first = r.k_min if cost else 1
        budget = (f"at every budget ≥ {count(num(r.a_wins_from_k), unit)}" if r.a_wins_from_k > first
                  else f"at every budget {up_to()}")
        head = f"{r.a} beats {r.b} on {task} {budget} (P ≥ {_floor(r.p_min_a_wins)}; {aso_part})"
    elif pd.notna(r.b_wins_from_k):
        head = (f"{r.b} beats {r.a} on {task} at every budget ≥ {count(num(r.b_wins_from_k), unit)} "
                f"(P ≥ {_floor(1 - r.p_max_b_wins)}), "
                f"though {r.a} has the higher seed-median ({aso_part})")
    elif r.a_wins_at:
        head = f"{r.a} beats {r.b} on {task} only at {_budgets(r.a_wins_at, unit)} ({aso_part})"
    elif r.b_wins_at:  # B wins somewhere, not up to the largest budget: a cheaper B at small budgets,
        # or, over a count, a B ahead in the middle whose lead the top few order statistics cannot show
        head = f"{r.b} beats {r.a} on {task} only at {_budgets(r.b_wins_at, unit)} ({aso_part})"
    else:
        head = (f"{r.a} and {r.b} are not separated on {task} at any budget {up_to()} "
                f"(P(A > B) = {r.p_at_k_max:.2f} at {at(r.k_max)}; {aso_part})")
    cross = ""
    if r.crossing_k:
        cross = f"; the EVP curves cross at {count(r.crossing_k.replace(';', ', '), unit)}" if cost else (
            f"; the EVP curves cross at k = {r.crossing_k.replace(';', ', ')}")
    costs = (f"; one {o.unit} costs {budget_label(r.cost_a)} vs {count(budget_label(r.cost_b), unit)} on average"
             if cost else "")
    fair = f"; {count(r.fairness_findings, 'fairness warning')}" if r.fairness_findings else ""
    return f"{head}; {sig}{cross}{_other_wins(r, unit)}{costs}{fair}."


def _budgets(where: str, unit: str) -> str:
    """The budgets of a ``_ranges`` string, in words: "a budget of 1 trial", "budgets of 2–16, 40
    trials"."""
    listed = where.replace(";", ", ")
    one = ";" not in where and "–" not in where
    return f"{'a budget' if one else 'budgets'} of {count(listed, unit)}"


def _other_wins(r, unit: str) -> str:
    """Where the side the sentence does not lead with wins too (a cheap method ahead at small
    budgets, a costly one at large; over a count, the spread one in the middle), as a clause."""
    a_leads = pd.notna(r.a_wins_from_k) or (pd.isna(r.b_wins_from_k) and bool(r.a_wins_at))
    winner, loser, where = (r.b, r.a, r.b_wins_at) if a_leads else (r.a, r.b, r.a_wins_at)
    if not where or not (a_leads or pd.notna(r.b_wins_from_k)):
        return ""
    return f"; {winner} beats {loser} at {_budgets(where, unit)}"


def _floor(p: float) -> str:
    return f"{math.floor(p * 100) / 100:.2f}"


def estimator_label(o: CompareOptions) -> str:
    return f"{o.estimator} ({CITATIONS[o.estimator]})"
