"""report.html: one self-contained page (inline SVG, inline CSS, no script, no CDN) with the
summary table, the EVP panels, the comparison sentences and P(A > B) plot, the Pareto view and
the fairness audit. ``peftsearch report`` writes it; every search logs it on its parent run
(analysis/report.html, which MLflow's artifact viewer renders)."""
from __future__ import annotations

import html
import io
import tempfile
from pathlib import Path

import pandas as pd

from tracking import tables
from tracking.analysis import SCORE_LABELS, Score, evp_curves, iid_note, summarize
from tracking.store import Selection, load_trials

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.warn{color:#a40}
figure{margin:1em 0}figure svg{max-width:100%;height:auto}li{margin:.3em 0}"""


def _svg(draw) -> str:
    """Inline SVG of a figure drawn by ``draw(stem)`` (a tracking.plots-style writer)."""
    with tempfile.TemporaryDirectory() as tmp:
        stem = Path(tmp) / "fig"
        draw(stem)
        text = stem.with_suffix(".svg").read_text()
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: inline SVG needs neither


def _table_html(t: tables.Table1) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["Method", "# Params"] + t.headers)
    rows = []
    for row in t.rows:
        cells = [tables._row_label(t, *row), tables.human_count(t.params[row])]
        cells += tables._cells(t, row, lambda s: f"\0{s}\1")
        rows.append("<tr>" + "".join(
            f"<td>{html.escape(c).replace(chr(0), '<b>').replace(chr(1), '</b>')}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _frame_html(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    df.to_html(buf, index=False, na_rep="–", float_format=lambda x: f"{x:.3f}", border=0)
    return buf.getvalue()


def _pareto_columns(points: pd.DataFrame) -> pd.DataFrame:
    p = points.assign(trainable_params=points["trainable_params"].map(tables.human_count))
    keep = ["task", "method"] + (["backbone"] if points["backbone"].nunique() > 1 else []) + [
        "median", "q25", "q75", "seeds", "trainable_params", "seconds_per_trial", "gpu_hours",
        "frontier_trainable_params", "frontier_seconds_per_trial"]
    return p[keep]


def analyses(trials: pd.DataFrame, o, *, score: Score = "selection", note: str | None = None):
    """What the page draws: the EVP curves of its panels, each up to ``o.max_k`` as ``evp
    --max-k`` (default N), and the comparison (None with one method per task), whose budgets stop
    at ``o.max_k`` as ``compare --max-k``. A budget the runs cannot give (GPU-hours of CPU trials)
    raises here, before anything is drawn."""
    from tracking.compare import compare
    from tracking.report import check_budget

    curves = evp_curves(trials, score=score, max_k=o.max_k)
    check_budget(curves, o.budget, len(trials))
    several = trials.groupby("task")["method"].nunique().max() > 1
    return curves, (compare(trials, o, note=note) if several else None)


def build(trials: pd.DataFrame, title: str, *, score: Score = "selection", compare_options=None) -> str:
    """The page. ``compare_options`` are compare's: ``budget`` sets the budget of the comparisons
    and the x axis of the EVP panels (as ``evp --budget``), ``max_k`` where both stop."""
    from tracking.compare import CompareOptions
    from tracking.compare_report import _settings, fairness_lines, plot_p_beats
    from tracking.pareto import pareto_points, plot_pareto
    from tracking.plots import plot_evp

    o = compare_options or CompareOptions(score=score)
    note = iid_note(trials)
    summary = summarize(trials, score=score)
    curves, c = analyses(trials, o, score=score, note=note)
    parts = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(SCORE_LABELS[score])}.</p>"]
    if note:
        parts.append(f"<p class='warn'>{html.escape(note)}</p>")
    parts += ["<h2>Summary</h2>", "<p>Seed-median ± std (×100) of each method's best assignment.</p>",
              _table_html(tables.table1(summary)), "<h2>Expected validation performance</h2>",
              f"<figure>{_svg(lambda s: plot_evp(curves, s, budget=o.budget, formats=('svg',)))}</figure>"]
    if c is not None:
        parts += ["<h2>Comparisons</h2>", f"<p>{html.escape(_settings(c))}</p>", "<ul>"]
        parts += [f"<li>{html.escape(s)}</li>" for s in c.sentences] + ["</ul>"]
        parts.append(f"<figure>{_svg(lambda s: plot_p_beats(c, s, formats=('svg',)))}</figure>")
        audit = fairness_lines(c)
    else:
        audit = ["fairness: one method per task, nothing compared."]
    points = pareto_points(trials, score=score)
    parts += ["<h2>Cost against quality (Pareto view)</h2>",
              f"<figure>{_svg(lambda s: plot_pareto(points, s, formats=('svg',)))}</figure>",
              _frame_html(_pareto_columns(points)), "<h2>Fairness audit</h2>", "<ul>"]
    parts += [f"<li class='warn'>{html.escape(x)}</li>" for x in audit] + ["</ul>"]
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n")


def write_report(uri: str, experiment: "str | Selection", out: Path, *, score: Score = "selection",
                 compare_options=None, log_to_parent: bool = False) -> list[Path]:
    from tracking.fairness import with_setup

    sel = Selection.of(experiment)
    trials = with_setup(uri, load_trials(uri, sel))
    page = build(trials, sel.label, score=score, compare_options=compare_options)  # a bad input fails here
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.html"
    path.write_text(page)
    if log_to_parent:
        from tracking.report import log_to_parents

        log_to_parents(uri, trials, [path])
    return [path]
