"""``peftsearch bench analytics``: how fast are ``evp`` + ``summary`` on a large tracking
database, compared with the same computation through ``MlflowClient.search_runs``?

The database is MLflow's own: MLflow creates the schema, the experiment and the parent run; the
trial runs (with the peftsearch tags, params and metrics a real search logs) are then
bulk-inserted through SQLAlchemy, because logging 100,000 runs one by one would take hours.
"""
from __future__ import annotations

import itertools
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from tracking.analysis import evp_curves, summarize
from tracking.runs import PARENT_TAG, tag

TASKS = ("rte", "mrpc", "cola", "sst2", "qnli", "qqp", "mnli", "stsb", "boolq", "cb")
METHODS = ("finetune", "prompt_tuning", "lora", "dept", "aot", "pasta", "ia3", "adapter", "bitfit", "prefix")


@dataclass(frozen=True)
class Layout:
    """runs = tasks × methods × configs × seeds (configs is derived from the requested total)."""

    tasks: int = 10
    methods: int = 10
    seeds: int = 5

    def configs(self, runs: int) -> int:
        per = self.tasks * self.methods * self.seeds
        if runs % per:
            raise ValueError(f"runs: must be a multiple of tasks × methods × seeds = {per} (got {runs})")
        return runs // per


def build_database(uri: str, *, runs: int, experiment: str = "bench", layout: Layout = Layout(),
                   seed: int = 0, chunk: int = 20_000) -> str:
    """Create ``experiment`` with one search (a parent run) of ``runs`` finished trial runs."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)  # creates MLflow's schema (its migrations) on first use
    exp_id = client.create_experiment(experiment)
    search_id = f"{experiment}-search"
    parent = client.create_run(exp_id, run_name=search_id, tags={
        tag("search_id"): search_id, tag("role"): "search", tag("algorithm"): "grid"}).info.run_id
    client.set_terminated(parent, "FINISHED")
    trials = synthetic_trials(runs, layout, seed)
    engine = sa.create_engine(uri)
    meta = sa.MetaData()
    meta.reflect(engine, only=["runs", "tags", "params", "metrics", "latest_metrics"])
    with engine.begin() as conn:
        for start in range(0, runs, chunk):
            part = trials.iloc[start:start + chunk]
            for table, rows in _rows(part, exp_id=int(exp_id), parent=parent, search_id=search_id).items():
                conn.execute(meta.tables[table].insert(), rows)
    engine.dispose()
    return exp_id


def synthetic_trials(runs: int, layout: Layout, seed: int) -> pd.DataFrame:
    """Scores with real structure (task difficulty, method effect, config effect, seed noise),
    rounded to 3 decimals so ties occur, as with accuracies on small dev sets."""
    rng = np.random.default_rng(seed)
    n_cfg = layout.configs(runs)
    grid = np.array(list(itertools.product(range(layout.tasks), range(layout.methods), range(n_cfg),
                                           range(layout.seeds))))
    t, m, c, s = grid.T
    task_base = rng.uniform(0.55, 0.9, layout.tasks)[t]
    method_fx = rng.normal(0, 0.03, layout.methods)[m]
    cfg_fx = rng.normal(0, 0.04, (layout.tasks, layout.methods, n_cfg))[t, m, c]
    score = np.clip(task_base + method_fx + cfg_fx + rng.normal(0, 0.01, len(grid)), 0, 1).round(3)
    start = 1_700_000_000_000 + np.arange(len(grid)) * 1000
    wall = rng.uniform(30, 90, len(grid))
    return pd.DataFrame({
        "run_uuid": [uuid.UUID(int=int(x)).hex for x in rng.integers(0, 2**63, len(grid))],
        "task": np.array(TASKS)[t % len(TASKS)], "method": np.array(METHODS)[m % len(METHODS)],
        "config_id": [f"c{x:05d}" for x in c], "seed": s, "score": score, "lr": 10.0 ** rng.uniform(-5, -2, len(grid)),
        "start": start, "end": start + (wall * 1000).astype(np.int64), "train_seconds": wall * 0.9,
        "params": 1000 * (m + 1) + t, "gpus": np.where(m % 2 == 0, 1.0, 0.0),
    })


def _rows(part: pd.DataFrame, *, exp_id: int, parent: str, search_id: str) -> dict[str, list[dict]]:
    recs = part.to_dict("records")
    runs = [{"run_uuid": r["run_uuid"], "name": f"{r['task']}-{r['method']}-{r['config_id']}-s{r['seed']}",
             "source_type": "UNKNOWN", "source_name": "", "entry_point_name": "", "user_id": "bench",
             "status": "FINISHED", "start_time": r["start"], "end_time": r["end"], "source_version": "",
             "lifecycle_stage": "active", "artifact_uri": "", "experiment_id": exp_id} for r in recs]
    tag_values = lambda r: {PARENT_TAG: parent, "mlflow.runName": f"{r['task']}-{r['config_id']}",  # noqa: E731
                            tag("method"): r["method"], tag("task"): r["task"], tag("backbone"): "bench/minilm",
                            tag("seed"): str(r["seed"]), tag("config_id"): r["config_id"],
                            tag("search_id"): search_id, tag("metric"): "acc", tag("gpus"): str(r["gpus"]),
                            tag("cpus"): "1.0"}
    tags = [{"key": k, "value": v, "run_uuid": r["run_uuid"]} for r in recs for k, v in tag_values(r).items()]
    params = [{"key": k, "value": str(r[k]), "run_uuid": r["run_uuid"]} for r in recs for k in ("lr", "seed")]
    metrics = [{"key": k, "value": float(v), "timestamp": r["end"], "step": 100, "is_nan": False,
                "run_uuid": r["run_uuid"]} for r in recs
               for k, v in (("best_dev_score", r["score"]), ("dev_score", r["score"]),
                            ("train_seconds", r["train_seconds"]), ("trainable_params", r["params"]))]
    return {"runs": runs, "tags": tags, "params": params, "metrics": metrics, "latest_metrics": metrics}


@dataclass(frozen=True)
class Timing:
    """Wall and CPU seconds of one path. On a shared machine wall time includes waiting for a
    core; the CPU time of this process is the cost that does not depend on the neighbours (the
    MlflowClient path runs in-process too: SQLite through MLflow's SQLAlchemy store)."""

    path: str
    runs: int
    load_s: float
    analysis_s: float
    cpu_s: float

    @property
    def total_s(self) -> float:
        return self.load_s + self.analysis_s


def time_path(name: str, load, runs: int) -> tuple[Timing, pd.DataFrame, pd.DataFrame]:
    """Load the trials with ``load()``, then compute evp (trial unit, with-replacement, every k
    up to N) and the summary; time both halves."""
    c0, t0 = time.process_time(), time.perf_counter()
    trials = load()
    t1 = time.perf_counter()
    curves, summary = evp_curves(trials), summarize(trials)
    t2 = time.perf_counter()
    return Timing(name, runs, t1 - t0, t2 - t1, time.process_time() - c0), curves, summary


def run_bench(workdir: Path, *, runs: int, client_runs: tuple[int, ...], echo=print) -> list[Timing]:
    """Build databases of ``runs`` and of each size in ``client_runs``; time our SQL path on all
    and the MlflowClient path on the ``client_runs`` sizes; check both give the same numbers."""
    from tracking.rest import load_trials_rest
    from tracking.store import Selection, load_trials

    uri = f"sqlite:///{(workdir / 'bench.db').resolve()}"
    sizes = sorted({runs, *client_runs})
    timings = []
    for n in sizes:
        t = time.perf_counter()
        if _exists(uri, f"bench-{n}"):
            echo(f"reusing the {n:,}-run experiment bench-{n} in {uri}")
        else:
            build_database(uri, runs=n, experiment=f"bench-{n}")
            echo(f"built {n:,} runs in {time.perf_counter() - t:.1f}s")
        sel = Selection((f"bench-{n}",))
        ours, c1, s1 = time_path("sqlalchemy (ours)", lambda: load_trials(uri, sel), n)
        timings.append(ours)
        if n in client_runs:
            theirs, c2, s2 = time_path("MlflowClient.search_runs", lambda: load_trials_rest(uri, sel), n)
            pd.testing.assert_frame_equal(c1, c2)
            pd.testing.assert_frame_equal(s1, s2)
            echo(f"  both paths give the same {len(c1):,} curve points and {len(s1)} summary rows")
            timings.append(theirs)
    return timings


def _exists(uri: str, experiment: str) -> bool:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri).get_experiment_by_name(experiment) is not None


def table(timings: list[Timing]) -> str:
    lines = ["| path | runs | load (s) | evp + summary (s) | total wall (s) | total CPU (s) |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {t.path} | {t.runs:,} | {t.load_s:.2f} | {t.analysis_s:.2f} | {t.total_s:.2f} | {t.cpu_s:.2f} |"
              for t in timings]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return "\n".join(lines + [f"(machine: {os.cpu_count()} CPUs, 1-minute load average {load:.1f} at the end)"])


def verdict(timings: list[Timing], runs: int) -> list[str]:
    """Speed-ups where both paths were measured on the same database; if the client path was not
    measured at ``runs``, a linear fit through its two largest measured sizes, labelled as such."""
    ours = {t.runs: t.total_s for t in timings if t.path.startswith("sqlalchemy")}
    theirs = {t.runs: t.total_s for t in timings if t.path.startswith("MlflowClient")}
    cpu = {(t.path[:4], t.runs): t.cpu_s for t in timings}
    lines = [f"measured at {n:,} runs: ours {ours[n]:.2f}s, MlflowClient {theirs[n]:.2f}s wall, "
             f"{theirs[n] / ours[n]:.0f}x faster ({cpu[('Mlfl', n)] / cpu[('sqla', n)]:.0f}x in CPU time)"
             for n in sorted(theirs)]
    if runs not in theirs and len(theirs) >= 2:
        (n1, t1), (n2, t2) = sorted(theirs.items())[-2:]
        est = t1 + (t2 - t1) * (runs - n1) / (n2 - n1)
        lines.append(f"EXTRAPOLATED (linear fit through {n1:,} and {n2:,} runs): MlflowClient at {runs:,} runs "
                     f"≈ {est:.0f}s, ≈ {est / ours[runs]:.0f}x our measured {ours[runs]:.2f}s")
    lines.append(f"ours at {runs:,} runs: {ours[runs]:.2f}s wall, {cpu[('sqla', runs)]:.2f}s CPU "
                 f"(target < 5s wall: {'met' if ours[runs] < 5 else 'NOT met'})")
    return lines
