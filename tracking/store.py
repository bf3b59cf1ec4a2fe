"""Read trials back from MLflow's SQL tables through SQLAlchemy (MlflowClient.search_runs is
far too slow on large experiments: MLflow issue 2730).

One query does the work: every tag and metric we need is a LEFT JOIN on MLflow's (key, run_uuid)
primary keys, and every filter is a WHERE clause, so the database returns one row per selected
trial and Python never loops over runs. ``http(s)://`` URIs go through tracking.rest instead.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from tracking.db import session_scope
from tracking.runs import PARENT_TAG, TAGS, tag

METRIC_COLUMNS = ("best_dev_score", "reported_score", "trainable_params",
                  # costs (trainers/loop.py TrainResult): absent from runs logged before they existed
                  "peak_rss_mb", "peak_gpu_mb", "inference_ms_per_example")
# The tags read per trial, each one indexed join (the query's cost): the search is reached through
# the parent run, so peftsearch.search_id is not needed, and the metric label, the same for every
# trial of a task, is read for one trial per task. Any other tag can still filter (Selection.tags).
TAG_COLUMNS = ("method", "task", "backbone", "seed", "config_id", "gpus", "task_format")
GROUP = ["task", "method", "backbone"]
NUMERIC = list(METRIC_COLUMNS) + ["gpus"]


class NoRunsError(LookupError):
    pass


@dataclass(frozen=True)
class Selection:
    """Which trials to analyse: one or more experiments, optionally narrowed to tasks, methods,
    backbones (any of the given values) and tags (every KEY=VALUE must hold). A tag key without
    a dot is a peftsearch tag: ``protocol`` means ``peftsearch.protocol``."""

    experiments: tuple[str, ...]
    tasks: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    backbones: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    group_by: tuple[str, ...] = ()  # "experiment" or tag keys: each value gets its own curve/row

    def __post_init__(self) -> None:
        if not self.experiments:
            raise ValueError("experiment: name at least one experiment (got none)")

    @classmethod
    def of(cls, experiment: "str | Selection") -> "Selection":
        return experiment if isinstance(experiment, Selection) else cls((experiment,))

    @property
    def tag_filters(self) -> tuple[tuple[str, str], ...]:
        return tuple((k if "." in k else tag(k), v) for k, v in self.tags)

    @property
    def group_tags(self) -> tuple[str, ...]:
        return tuple(k if "." in k else tag(k) for k in self.group_by if k != "experiment")

    @property
    def label(self) -> str:
        return " + ".join(self.experiments)


def parse_tag_filter(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"tag: must be KEY=VALUE (got {text!r})")
    return key.strip(), value


def load_trials(uri: str, experiment: "str | Selection", *, finished_only: bool = True) -> pd.DataFrame:
    """One row per trial run of the selection: its peftsearch tags, summary metrics, wall time
    and the algorithm of the search it belongs to."""
    sel = Selection.of(experiment)
    if uri.startswith(("http://", "https://")):
        from tracking.rest import load_trials_rest

        return load_trials_rest(uri, sel, finished_only=finished_only)
    with session_scope(uri) as s:
        exp_ids = _experiment_ids(s, sel.experiments)
        sql, params = _trials_query(exp_ids, sel, finished_only)
        result = s.execute(sa.text(sql).bindparams(*_expanding(params)), params)
        # plain tuples: pandas probes each SQLAlchemy Row for attributes, which costs seconds at 100k
        df = pd.DataFrame([tuple(r) for r in result.all()], columns=list(result.keys()))
        searches = _searches(s, exp_ids)
        if not df.empty:
            df["metric"] = df["task"].map(_metric_labels(s, df))
    return finish(df, searches, sel, dict(zip(map(str, exp_ids), sel.experiments)))


def _metric_labels(s, df: pd.DataFrame) -> dict[str, str]:
    """task -> its metric label (peftsearch.metric), read from one trial of each task."""
    ids = df.drop_duplicates("task").set_index("run_uuid")["task"]
    rows = s.execute(sa.text("SELECT run_uuid, value FROM tags WHERE key = :k AND run_uuid IN :ids")
                     .bindparams(sa.bindparam("ids", expanding=True)), {"k": tag("metric"), "ids": list(ids.index)})
    return {ids[run]: value for run, value in rows}


def _experiment_ids(s, names: tuple[str, ...]) -> list[str]:
    found = dict(s.execute(sa.text("SELECT name, experiment_id FROM experiments")).all())
    missing = [n for n in names if n not in found]
    if missing:
        raise NoRunsError(f"experiment: no experiment named {missing[0]!r} (found: {', '.join(found) or 'none'})")
    return [found[n] for n in names]


def _group_joins(sel: Selection) -> tuple[list[str], list[str], dict]:
    cols, joins, params = [], [], {}
    for i, key in enumerate(sel.group_tags):
        joins.append(f"LEFT JOIN tags g{i} ON g{i}.run_uuid = r.run_uuid AND g{i}.key = :gk{i}")
        cols.append(f"g{i}.value AS {group_column(key)}")
        params[f"gk{i}"] = key
    return cols, joins, params


def group_column(key: str) -> str:
    return "group_" + "".join(ch if ch.isalnum() else "_" for ch in key)


def _trials_query(exp_ids: list[str], sel: Selection, finished_only: bool) -> tuple[str, dict]:
    cols = ["r.run_uuid", "r.experiment_id", "r.status", "r.start_time", "r.end_time", "tp.value AS parent_run_id"]
    joins = ["JOIN tags tp ON tp.run_uuid = r.run_uuid AND tp.key = :k_parent",
             "JOIN tags t_method ON t_method.run_uuid = r.run_uuid AND t_method.key = :k_method"]
    params: dict = {"k_parent": PARENT_TAG, "k_method": tag("method"), "exp_ids": exp_ids}
    cols.append("t_method.value AS method")
    for name in TAG_COLUMNS:
        if name != "method":
            joins.append(f"LEFT JOIN tags t_{name} ON t_{name}.run_uuid = r.run_uuid AND t_{name}.key = :k_{name}")
            cols.append(f"t_{name}.value AS {name}")
            params[f"k_{name}"] = tag(name)
    for name in METRIC_COLUMNS:
        joins.append(f"LEFT JOIN latest_metrics m_{name} ON m_{name}.run_uuid = r.run_uuid AND m_{name}.key = :k_{name}")
        cols.append(f"m_{name}.value AS {name}")
        params[f"k_{name}"] = name
    gcols, gjoins, gparams = _group_joins(sel)
    cols, joins, params = cols + gcols, joins + gjoins, params | gparams
    where = ["r.experiment_id IN :exp_ids", "r.lifecycle_stage = 'active'"]
    if finished_only:
        where += ["r.status = 'FINISHED'", "m_best_dev_score.value IS NOT NULL"]
    for name, values in (("task", sel.tasks), ("method", sel.methods), ("backbone", sel.backbones)):
        if values:
            where.append(f"t_{name}.value IN :v_{name}")
            params[f"v_{name}"] = list(values)
    for i, (key, value) in enumerate(sel.tag_filters):
        where.append(f"EXISTS (SELECT 1 FROM tags f{i} WHERE f{i}.run_uuid = r.run_uuid "
                     f"AND f{i}.key = :fk{i} AND f{i}.value = :fv{i})")
        params |= {f"fk{i}": key, f"fv{i}": value}
    sql = f"SELECT {', '.join(cols)} FROM runs r {' '.join(joins)} WHERE {' AND '.join(where)}"
    return sql, params


def _expanding(params: dict) -> list:
    return [sa.bindparam(k, expanding=True) for k, v in params.items() if isinstance(v, list)]


def _searches(s, exp_ids: list[str]) -> pd.DataFrame:
    """The parent run of each search (the trials' mlflow.parentRunId) and its algorithm."""
    rows = s.execute(sa.text(
        "SELECT r.run_uuid AS parent_run_id, ts.value AS search_id, ta.value AS algorithm FROM runs r "
        "JOIN tags tr ON tr.run_uuid = r.run_uuid AND tr.key = :role AND tr.value = 'search' "
        "LEFT JOIN tags ts ON ts.run_uuid = r.run_uuid AND ts.key = :sid "
        "LEFT JOIN tags ta ON ta.run_uuid = r.run_uuid AND ta.key = :alg "
        "WHERE r.experiment_id IN :exp_ids").bindparams(sa.bindparam("exp_ids", expanding=True)),
        {"role": tag("role"), "sid": tag("search_id"), "alg": tag("algorithm"), "exp_ids": exp_ids}).mappings().all()
    return pd.DataFrame(rows, columns=["parent_run_id", "search_id", "algorithm"])


def finish(df: pd.DataFrame, searches: pd.DataFrame, sel: Selection, exp_names: dict[str, str]) -> pd.DataFrame:
    """Types and derived columns shared by the SQL and REST readers."""
    if df.empty:
        raise NoRunsError(f"experiment: {sel.label!r} has no finished trial runs matching the filters")
    for c in TAG_COLUMNS + ("metric",):
        if c not in df.columns:
            df[c] = None
    searches = searches.drop_duplicates("parent_run_id").assign(search_run_id=lambda s: s["parent_run_id"])
    df = df.merge(searches, on="parent_run_id", how="left")
    df[NUMERIC] = df.reindex(columns=NUMERIC).apply(pd.to_numeric, errors="coerce")
    df["wall_seconds"] = (pd.to_numeric(df["end_time"]) - pd.to_numeric(df["start_time"])) / 1000.0
    df["seed"] = pd.to_numeric(df["seed"]).astype(int)
    df["experiment_id"] = df["experiment_id"].astype(str)
    df["experiment"] = df["experiment_id"].map(exp_names)
    # The task format (encoder-head, seq2seq-lm, decoder-head, decoder-lm) is part of what was
    # compared: folded into the backbone's label, every table, curve and export names it and
    # keeps runs of different formats apart.
    fmt = df["task_format"].notna()
    df.loc[fmt, "backbone"] = df.loc[fmt, "backbone"] + " [" + df.loc[fmt, "task_format"] + "]"
    if sel.group_by:
        df["method"] = df["method"] + " [" + _group_labels(df, sel) + "]"
    return df.sort_values("run_uuid").reset_index(drop=True)


def _group_labels(df: pd.DataFrame, sel: Selection) -> pd.Series:
    """Grouping folds each group's values into the method's label (``lora [protocol=heldout]``),
    so every curve, panel and table row downstream is split by it with no other change."""
    parts = []
    for k in sel.group_by:
        values = df["experiment"] if k == "experiment" else df[group_column(k if "." in k else tag(k))]
        parts.append(k + "=" + values.fillna("∅").astype(str))
    label = parts[0]
    for p in parts[1:]:
        label = label + ", " + p
    return label
