"""Summary tables laid out like Table 1 of the AoT paper: one row per method (per method ×
backbone when several backbones are compared), one column per task with the seed-median ± std
(×100) of the method's best assignment, a Macro column (mean of the task medians), the best
value of each column in bold, and each method's trainable parameters."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Table1:
    rows: list[tuple[str, str]]     # (method, backbone)
    columns: list[str]              # task names, then "Macro"
    headers: list[str]              # column headers: "RTE (acc)", ..., "Macro"
    median: pd.DataFrame            # rows × columns, ×100; NaN where a method lacks a task
    std: pd.DataFrame               # rows × tasks, ×100
    best: pd.DataFrame              # rows × columns, True for the best of each column (ties too)
    params: pd.Series               # trainable parameters per row
    several_backbones: bool


def table1(summary: pd.DataFrame) -> Table1:
    tasks = sorted(summary["task"].unique())
    idx = ["method", "backbone"]
    median = summary.pivot_table(index=idx, columns="task", values="median", aggfunc="first").reindex(columns=tasks) * 100
    std = summary.pivot_table(index=idx, columns="task", values="std", aggfunc="first").reindex(columns=tasks) * 100
    median["Macro"] = median[tasks].mean(axis=1, skipna=False)  # only rows that have every task
    best = median.eq(median.max(axis=0)) & median.notna()
    params = summary.groupby(idx)["trainable_params"].median().reindex(median.index)
    labels = summary.groupby("task")["metric"].first()
    headers = [f"{t.upper()} ({labels[t]})" if isinstance(labels.get(t), str) else t.upper() for t in tasks]
    return Table1(rows=list(median.index), columns=tasks + ["Macro"], headers=headers + ["Macro"],
                  median=median, std=std, best=best, params=params,
                  # a task format other than encoder-head is always named (tracking/store.py folds it in)
                  several_backbones=summary["backbone"].nunique() > 1
                  or bool(summary["backbone"].str.contains(r"\[(?!encoder-head)", regex=True).any()))


def human_count(n: float) -> str:
    """Parameter counts the way papers print them: 768, 12.3K, 0.3M, 1.2B."""
    if n is None or np.isnan(n):
        return "–"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size or (unit == "M" and n >= 1e5):
            return f"{n / size:.1f}{unit}"
    return f"{int(n)}"


def _row_label(t: Table1, method: str, backbone: str) -> str:
    return f"{method} ({_short(backbone)})" if t.several_backbones else method


def _cells(t: Table1, row, bold) -> list[str]:
    out = []
    for c in t.columns:
        m = t.median.at[row, c]
        if np.isnan(m):
            out.append("–")
            continue
        value = bold(f"{m:.1f}") if t.best.at[row, c] else f"{m:.1f}"
        out.append(value if c == "Macro" else f"{value} ± {t.std.at[row, c]:.1f}")
    return out


def to_markdown(t: Table1) -> str:
    head = ["Method", "# Params"] + t.headers
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in t.rows:
        cells = [_row_label(t, *row), human_count(t.params[row])] + _cells(t, row, lambda s: f"**{s}**")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_latex(t: Table1, *, caption: str = "") -> str:
    esc = lambda s: s.replace("_", r"\_").replace("%", r"\%").replace("±", r"$\pm$").replace("×", r"$\times$")  # noqa: E731
    lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l r " + "c " * len(t.columns) + "}",
             r"\toprule", " & ".join(["Method", r"\# Params"] + [esc(h) for h in t.headers]) + r" \\", r"\midrule"]
    for row in t.rows:
        cells = [esc(_row_label(t, *row)), human_count(t.params[row])] + [
            esc(c) for c in _cells(t, row, lambda s: rf"\textbf{{{s}}}")]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(rf"\caption{{{esc(caption)}}}")
    return "\n".join(lines + [r"\end{table}"]) + "\n"


def to_csv_frame(t: Table1) -> pd.DataFrame:
    """The same layout with numbers: per task its median, std and best flag, then Macro."""
    out = pd.DataFrame({"method": [r[0] for r in t.rows], "backbone": [r[1] for r in t.rows],
                        "trainable_params": t.params.to_numpy()})
    for c in t.columns:
        out[f"{c}_median"] = t.median[c].to_numpy().round(4)
        if c != "Macro":
            out[f"{c}_std"] = t.std[c].to_numpy().round(4)
        out[f"{c}_best"] = t.best[c].to_numpy()
    return out


def _short(backbone: str) -> str:
    return backbone.rstrip("/").split("/")[-1]
