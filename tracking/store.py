"""Read trials back from MLflow's SQL tables through SQLAlchemy (MlflowClient.search_runs is
far too slow on large experiments: MLflow issue 2730)."""
from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from tracking.db import session_scope
from tracking.runs import PARENT_TAG, TAGS, tag

METRIC_COLUMNS = ("best_dev_score", "train_seconds", "trainable_params")
GROUP = ["task", "method", "backbone"]


class NoRunsError(LookupError):
    pass


def load_trials(uri: str, experiment: str, *, finished_only: bool = True) -> pd.DataFrame:
    """One row per trial run of ``experiment``: its peftsearch tags and summary metrics."""
    tag_keys = [tag(k) for k in TAGS] + [PARENT_TAG]
    with session_scope(uri) as s:
        exp = s.execute(sa.text("SELECT experiment_id FROM experiments WHERE name = :n"), {"n": experiment}).first()
        if exp is None:
            names = [r[0] for r in s.execute(sa.text("SELECT name FROM experiments"))]
            raise NoRunsError(f"experiment: no experiment named {experiment!r} (found: {', '.join(names) or 'none'})")
        runs = pd.DataFrame(s.execute(sa.text(
            "SELECT run_uuid, status, start_time, end_time FROM runs "
            "WHERE experiment_id = :e AND lifecycle_stage = 'active'"), {"e": exp[0]}).all(),
            columns=["run_uuid", "status", "start_time", "end_time"])
        tags = pd.DataFrame(s.execute(sa.text(
            "SELECT t.run_uuid, t.key, t.value FROM tags t JOIN runs r ON r.run_uuid = t.run_uuid "
            "WHERE r.experiment_id = :e AND t.key IN :keys").bindparams(sa.bindparam("keys", expanding=True)),
            {"e": exp[0], "keys": tag_keys}).all(), columns=["run_uuid", "key", "value"])
        metrics = pd.DataFrame(s.execute(sa.text(
            "SELECT m.run_uuid, m.key, m.value FROM latest_metrics m JOIN runs r ON r.run_uuid = m.run_uuid "
            "WHERE r.experiment_id = :e AND m.key IN :keys").bindparams(sa.bindparam("keys", expanding=True)),
            {"e": exp[0], "keys": list(METRIC_COLUMNS)}).all(), columns=["run_uuid", "key", "value"])
    df = runs.merge(_pivot(tags, tag_keys), on="run_uuid").merge(_pivot(metrics, METRIC_COLUMNS), on="run_uuid", how="left")
    df = df.rename(columns={tag(k): k for k in TAGS} | {PARENT_TAG: "parent_run_id"})
    df = df[df["parent_run_id"].notna() & df["method"].notna()]
    if finished_only:
        df = df[(df["status"] == "FINISHED") & df["best_dev_score"].notna()]
    if df.empty:
        raise NoRunsError(f"experiment: {experiment!r} has no finished trial runs")
    return df.assign(seed=df["seed"].astype(int)).reset_index(drop=True)


def _pivot(long: pd.DataFrame, keys) -> pd.DataFrame:
    wide = long.pivot(index="run_uuid", columns="key", values="value").reset_index()
    for k in keys:
        if k not in wide.columns:
            wide[k] = None
    return wide
