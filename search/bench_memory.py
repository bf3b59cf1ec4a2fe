"""`peftsearch bench memory`: the resident memory of each trial of a real search.

The search runs as `peftsearch run` does (the embedded Ray, one worker process per concurrent
trial, reused between trials), on a private SQLite store in a temporary directory. Every trial
measures its own process's peak resident memory (trainers/memory.py: the kernel's high-water
mark, reset at the trial's start) and, on CUDA, torch's peak allocated memory, and logs them as
the metrics ``peak_rss_mb`` and ``peak_gpu_mb``; the bench reads them back from MLflow and prints
one row per trial and the median per method. Default: the README's demo search."""
from __future__ import annotations

import tempfile
from pathlib import Path

from trainers.bench import load_line


def run_bench(spec_ref: str, *, data_dir: str, max_epochs: int | None = None, malloc: str | None = None, echo=print,
              console=None) -> list[dict]:
    from search.runner import run_search
    from search.spec import load_spec
    from tracking.store import load_trials

    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        overrides = {"data.source": "local", "data.dir": str(Path(data_dir).resolve()), "tracking.uri": uri}
        if max_epochs:
            overrides["training.max_epochs"] = max_epochs
        if malloc:
            overrides["resources.malloc"] = malloc
        spec = load_spec(spec_ref, overrides=overrides)
        echo(f"{spec.name}: {spec.trial_count()} trials on {spec.backbone}, resources.malloc {spec.resources.malloc} ...")
        run_search(spec, out_dir=Path(tmp) / "out", console=console)  # the progress lines of `run`
        trials = load_trials(uri, spec.name, finished_only=False)
    cols = ["method", "config_id", "seed", "peak_rss_mb", "peak_gpu_mb", "wall_seconds", "inference_ms_per_example"]
    return trials.reindex(columns=cols).sort_values(["method", "config_id", "seed"]).to_dict("records")


def table(rows: list[dict]) -> str:
    def mb(v) -> str:
        return "-" if v != v else f"{v:,.0f}"  # v != v: NaN, not measured

    lines = [load_line(), "| method | assignment | seed | peak resident MB | peak GPU MB | wall s | inference ms/example |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['config_id']} | {r['seed']} | {mb(r['peak_rss_mb'])} | {mb(r['peak_gpu_mb'])} "
                     f"| {r['wall_seconds']:.0f} | {r['inference_ms_per_example']:.2f} |")
    import pandas as pd

    med = pd.DataFrame(rows).groupby("method")[["peak_rss_mb", "peak_gpu_mb"]].median()
    lines.append("")
    lines.append("median peak per method: " + "; ".join(
        f"{m} {mb(v.peak_rss_mb)} MB resident" + ("" if v.peak_gpu_mb != v.peak_gpu_mb else f", {mb(v.peak_gpu_mb)} MB GPU")
        for m, v in med.iterrows()))
    return "\n".join(lines)
