"""The files of ``peftsearch compare``: compare.md, compare.tex, compare.csv, compare.json and
compare_p.png/.svg (P(A > B) against the budget, one panel per task), each with the fairness
audit; optionally logged under analysis/ on each search's parent run."""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from tracking.compare import BUDGET_UNITS, CompareOptions, Comparison, budget_columns, budget_label, compare, estimator_label
from tracking.fairness import enforce, with_setup
from tracking.store import Selection, load_trials
from tracking.words import count

COMPARE_FORMATS = ("md", "tex", "csv", "json", "png", "svg")
TABLE_COLUMNS = [("task", "Task"), ("a", "A"), ("b", "B"), ("median_a", "median A"), ("median_b", "median B"),
                 ("diff", "Δ median"), ("p_holm", "p (Holm)"), ("aso_eps_a_over_b", "ASO ε_min"),
                 ("seeds_for_80_power", "seeds for 80% power"), ("a_wins_from_k", "A wins from k"),
                 ("crossing_k", "curves cross at k")]
BUDGET_KEYS = ("a_wins_from_k", "crossing_k")  # headed by the unit under a compute budget


def run_compare(uri: str, experiment: "str | Selection", out: Path, *, options: CompareOptions | None = None,
                strict: bool = False, formats: tuple[str, ...] = COMPARE_FORMATS, log_to_parent: bool = False,
                echo=print) -> tuple[Comparison, list[Path]]:
    from tracking.analysis import iid_note

    sel = Selection.of(experiment)
    trials = with_setup(uri, load_trials(uri, sel))
    result = compare(trials, options, note=iid_note(trials))
    for f in result.findings:
        echo(f.line())
    enforce(result.findings, strict)  # before anything is written
    files = write(result, out, title=sel.label, formats=formats)
    if log_to_parent:
        from tracking.report import log_to_parents

        log_to_parents(uri, trials, files)
    return result, files


def _fmt(v) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, (float, np.floating)):
        return f"{v:.3f}"
    return str(v).replace(";", ", ") or "–"


def _columns(o: CompareOptions) -> list[tuple[str, str]]:
    if o.budget == "assignments":
        return TABLE_COLUMNS
    unit = BUDGET_UNITS[o.budget]
    heads = {"a_wins_from_k": f"A wins from ({unit})", "crossing_k": f"curves cross at ({unit})"}
    return [(k, heads.get(k, h)) for k, h in TABLE_COLUMNS] + [("cost_a", f"{unit} per {o.unit} A"),
                                                             ("cost_b", f"{unit} per {o.unit} B")]


def _cell(r: dict, key: str, o: CompareOptions) -> str:
    v = r[key]
    if o.budget != "assignments" and key in BUDGET_KEYS + ("cost_a", "cost_b") and isinstance(v, float) and v == v:
        return budget_label(v)
    return _fmt(v)


def _budget_settings(o: CompareOptions) -> str:
    if o.budget == "assignments":
        return (f"Over budgets: {estimator_label(o)}, one sample per {o.unit}, P(A > B) from "
                f"{count(o.resamples, 'bootstrap resample')}; a method wins at a budget where P ≥ {o.level} and a "
                f"permutation test over all budgets at once (max-statistic, {count(o.resamples, 'relabelling')}) "
                f"rejects at {o.alpha / 2:.3g}.")
    cost = "wall seconds × GPUs / 3600" if o.budget == "gpu-hours" else "wall seconds"
    return (f"Over budgets in {BUDGET_UNITS[o.budget]} ({cost} per {o.unit}, from the runs): at a budget b each method "
            f"gets b / its mean cost draws, {estimator_label(o)} at that real number of draws; P(A > B) from "
            f"{count(o.resamples, 'bootstrap resample')} of each method's (score, cost) pairs; a method wins at a "
            f"budget where P ≥ {o.level} and a bootstrap-t simultaneous band over all the budgets at once (sup-t, "
            f"jackknife-studentised, re-centred at the observed difference) excludes 0 at α = {o.alpha}.")


def _settings(c: Comparison) -> str:
    o = c.options
    return (f"Over seeds: each method's best assignment; permutation test of the median difference, Holm-adjusted "
            f"over {count(len(c.pairs), 'comparison')} at α = {o.alpha}; ASO (Dror et al. 2019) at confidence {o.level}, "
            f"Bonferroni over the comparisons. {_budget_settings(o)}"
            + (f" {c.note}" if c.note else ""))


def fairness_lines(c: Comparison) -> list[str]:
    return [f.line() for f in c.findings] or ["fairness: no differences found in budgets, set-ups or search algorithms."]


def to_markdown(c: Comparison, title: str) -> str:
    cols = _columns(c.options)
    head = "| " + " | ".join(h for _, h in cols) + " |"
    lines = [f"# Comparison: {title}", "", _settings(c), "", "## Findings", ""]
    lines += [f"- {s}" for s in c.sentences] + ["", "## Table", "", head, "|" + "---|" * len(cols)]
    for r in c.pairs.to_dict("records"):
        lines.append("| " + " | ".join(_cell(r, k, c.options) for k, _ in cols) + " |")
    lines += ["", "## Fairness audit", ""] + [f"- {x}" for x in fairness_lines(c)]
    return "\n".join(lines) + "\n"


def to_latex(c: Comparison, title: str) -> str:
    esc = lambda s: (str(s).replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%")  # noqa: E731
                     .replace("&", r"\&").replace("≥", r"$\geq$").replace("ε", r"$\varepsilon$")
                     .replace("Δ", r"$\Delta$").replace("α", r"$\alpha$").replace("±", r"$\pm$").replace("×", r"$\times$"))
    cols = _columns(c.options)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{" + "l" * len(cols) + "}",
             r"\toprule", " & ".join(esc(h) for _, h in cols) + r" \\", r"\midrule"]
    for r in c.pairs.to_dict("records"):
        lines.append(" & ".join(esc(_cell(r, k, c.options)) for k, _ in cols) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{esc(title)}: {esc(_settings(c))}}}", r"\end{table}", ""]
    lines += [rf"% {esc(s)}" for s in c.sentences] + [rf"% {esc(x)}" for x in fairness_lines(c)]
    return "\n".join(lines) + "\n"


def to_json(c: Comparison, title: str) -> str:
    def clean(v):
        if isinstance(v, (np.integer,)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            return None if math.isnan(v) else float(v)
        if isinstance(v, np.bool_):
            return bool(v)
        if v is pd.NA:
            return None
        return v

    pairs = [{k: clean(v) for k, v in r.items()} for r in c.pairs.to_dict("records")]
    for p in pairs:
        g = c.budgets[(c.budgets["task"] == p["task"]) & (c.budgets["a"] == p["a"]) & (c.budgets["b"] == p["b"])]
        p["budgets"] = {col: [clean(x) for x in g[col]] for col in budget_columns(c.options)}
    return json.dumps({"title": title, "options": asdict(c.options), "settings": _settings(c),
                       "fairness": [asdict(f) for f in c.findings], "pairs": pairs}, indent=1, ensure_ascii=False)


def plot_p_beats(c: Comparison, stem: Path, formats=("png", "svg")) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tracking.plots import X_AXES

    cost = c.options.budget != "assignments"
    tasks = sorted(c.budgets["task"].unique())
    cols = min(3, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 3.4 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        for (a, b), g in c.budgets[c.budgets["task"] == task].groupby(["a", "b"], sort=True):
            ax.plot(g["k"], g["p_a_beats_b"], marker="o" if len(g) <= 30 else None, markersize=3, label=f"{a} > {b}")
        for y in (c.options.level, 1 - c.options.level):
            ax.axhline(y, color="grey", lw=0.8, ls="--")
        ax.axhline(0.5, color="grey", lw=0.5)
        ax.set_ylim(-0.02, 1.02)
        if c.budgets["k"].max() > 300 or (cost and c.budgets["k"].max() > 10 * c.budgets["k"].min()):
            ax.set_xscale("log")
        ax.set_title(task.upper())
        ax.set_xlabel(X_AXES[c.options.budget][1].format(unit=c.options.unit) if cost else f"budget k ({c.options.unit}s)")
        ax.set_ylabel("bootstrap P(A > B)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    from tracking.plots import save_figure

    return save_figure(fig, stem, tuple(formats))


def write(c: Comparison, out: Path, *, title: str, formats: tuple[str, ...] = COMPARE_FORMATS) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = []
    if "md" in formats:
        files.append(out / "compare.md")
        files[-1].write_text(to_markdown(c, title))
    if "tex" in formats:
        files.append(out / "compare.tex")
        files[-1].write_text(to_latex(c, title))
    if "csv" in formats:
        files.append(out / "compare.csv")
        fair = "; ".join(fairness_lines(c))
        c.pairs.assign(fairness=fair).to_csv(files[-1], index=False)
        files.append(out / "compare_budgets.csv")
        c.budgets.to_csv(files[-1], index=False)
    if "json" in formats:
        files.append(out / "compare.json")
        files[-1].write_text(to_json(c, title))
    plots = tuple(f for f in ("png", "svg") if f in formats)
    if plots:
        files += plot_p_beats(c, out / "compare_p", plots)
    return files

