"""Files a paper needs, written from the tracking database: evp.csv + evp.png, summary.csv +
summary.md. Used by ``peftsearch evp``/``summary`` and at the end of every search."""
from __future__ import annotations

from pathlib import Path

from tracking.analysis import Unit, evp_curves, markdown_table, summarize
from tracking.evp import Estimator
from tracking.plots import plot_evp
from tracking.store import load_trials


def write_evp(uri: str, experiment: str, out: Path, *, unit: Unit = "trial",
              estimator: Estimator = "with-replacement") -> list[Path]:
    curves = evp_curves(load_trials(uri, experiment), unit=unit, estimator=estimator)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "evp.csv"
    curves.to_csv(csv, index=False)
    title = f"{experiment}: EVP ({estimator}, one sample per {unit})"
    return [csv, plot_evp(curves, out / "evp.png", note=title)]


def write_summary(uri: str, experiment: str, out: Path) -> list[Path]:
    trials = load_trials(uri, experiment)
    summary = summarize(trials)
    out.mkdir(parents=True, exist_ok=True)
    csv, md = out / "summary.csv", out / "summary.md"
    summary.to_csv(csv, index=False)
    labels = trials.dropna(subset=["metric"]).groupby("task")["metric"].first().to_dict()
    md.write_text(
        f"# {experiment}\n\nDev score of the assignment with the best seed-median, per task: "
        "median ± std over seeds (×100). Macro is the mean over tasks.\n\n" + markdown_table(summary, labels)
    )
    return [csv, md]
