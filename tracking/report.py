"""Files a paper needs, written from the tracking database, and optionally logged on the parent
run of every search they cover (``analysis/`` in the MLflow UI):

- ``evp``: evp.csv, evp.json, evp.png, evp.svg;
- ``summary``: summary.csv (tidy numbers), summary.md, summary.tex and table1.csv (Table-1 layout).

Used by ``peftsearch evp``/``summary`` and at the end of every search."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from tracking import exports, tables
from tracking.analysis import SCORE_LABELS, Budget, Score, Unit, evp_curves, iid_note, summarize
from tracking.evp import Estimator
from tracking.plots import plot_evp
from tracking.store import Selection, load_trials
from tracking.words import noun

EVP_FORMATS = ("csv", "json", "png", "svg")
SUMMARY_FORMATS = ("csv", "md", "tex")


@dataclass(frozen=True)
class EvpOptions:
    unit: Unit = "trial"
    estimator: Estimator = "with-replacement"
    score: Score = "selection"
    budget: Budget = "assignments"
    bootstrap: int = 0
    seed: int = 0
    level: float = 0.95
    max_k: int | None = None  # the largest budget (default N); ticks are log-spaced past 300


def write_evp(uri: str, experiment: "str | Selection", out: Path, *, options: EvpOptions | None = None,
              formats: tuple[str, ...] = EVP_FORMATS, log_to_parent: bool = False, **kw) -> list[Path]:
    """EVP curves of the selection; ``kw`` are EvpOptions fields (unit=, estimator=, ...)."""
    o = options or EvpOptions(**kw)
    sel = Selection.of(experiment)
    trials = load_trials(uri, sel)
    curves = evp_curves(trials, unit=o.unit, estimator=o.estimator, score=o.score, max_k=o.max_k,
                        bootstrap=o.bootstrap, seed=o.seed, level=o.level)
    check_budget(curves, o.budget, len(trials))
    note = iid_note(trials)
    band = f"{o.bootstrap}-resample bootstrap {o.level:.0%} CI" if o.bootstrap else "± std"
    title = f"{sel.label}: EVP of the {o.score} score ({o.estimator}, one sample per {o.unit}, {band})"
    out.mkdir(parents=True, exist_ok=True)
    files = []
    if "csv" in formats:
        files.append(exports.curves_csv(curves, out / "evp.csv", note=note))
    if "json" in formats:
        meta = {"experiments": list(sel.experiments), "selection": asdict(sel), "options": asdict(o),
                "score_label": SCORE_LABELS[o.score], "note": note}
        files.append(exports.curves_json(curves, out / "evp.json", meta=meta))
    plot_formats = tuple(f for f in ("png", "svg") if f in formats)
    if plot_formats:
        files += plot_evp(curves, out / "evp", budget=o.budget, formats=plot_formats,
                          note=title + (f"\n{note}" if note else ""))
    if log_to_parent:
        log_to_parents(uri, trials, files)
    return files


def check_budget(curves: pd.DataFrame, budget: Budget, trials: int) -> None:
    """A GPU-hours axis needs trials that used GPUs (evp_curves leaves their budget NaN otherwise)."""
    if budget == "gpu-hours" and curves["budget_gpu_hours"].isna().all():
        raise ValueError("budget: 'gpu-hours' needs trials that ran on GPUs (tag peftsearch.gpus > 0); "
                         f"none of the {trials} selected {noun('trial', trials)} did")


def write_summary(uri: str, experiment: "str | Selection", out: Path, *, score: Score = "selection",
                  formats: tuple[str, ...] = SUMMARY_FORMATS, log_to_parent: bool = False) -> list[Path]:
    sel = Selection.of(experiment)
    trials = load_trials(uri, sel)
    summary = summarize(trials, score=score)
    table = tables.table1(summary)
    note = iid_note(trials)
    caption = (f"{sel.label}: {SCORE_LABELS[score]} of each method's best assignment (best seed-median), "
               "median ± std over seeds (×100); Macro is the mean over tasks; best per column in bold."
               + (f" {note}" if note else ""))
    out.mkdir(parents=True, exist_ok=True)
    files = []
    if "csv" in formats:
        summary.to_csv(out / "summary.csv", index=False)
        tables.to_csv_frame(table).to_csv(out / "table1.csv", index=False)
        files += [out / "summary.csv", out / "table1.csv"]
    if "md" in formats:
        (out / "summary.md").write_text(f"# {sel.label}\n\n{caption}\n\n" + tables.to_markdown(table))
        files.append(out / "summary.md")
    if "tex" in formats:
        (out / "summary.tex").write_text(tables.to_latex(table, caption=caption))
        files.append(out / "summary.tex")
    if log_to_parent:
        log_to_parents(uri, trials, files)
    return files


def log_to_parents(uri: str, trials: pd.DataFrame, files: list[Path]) -> list[str]:
    """Log the files under ``analysis/`` on the parent run of each search the trials came from."""
    from tracking.runs import client

    c = client(uri)
    run_ids = sorted(trials["search_run_id"].dropna().unique())
    for run_id in run_ids:
        for f in files:
            c.log_artifact(run_id, str(f), "analysis")
    return run_ids
