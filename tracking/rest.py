"""Read trials through MLflow's own API, ``MlflowClient.search_runs`` page by page: over the
REST API of a remote MLflow server (an ``http(s)://`` tracking URI, where no database is
reachable), and as the baseline that ``peftsearch bench analytics`` times our SQL reader against.
It returns the same table as tracking.store.load_trials."""
from __future__ import annotations

import pandas as pd

from tracking.runs import PARENT_TAG, tag
from tracking.store import METRIC_COLUMNS, TAG_COLUMNS, NoRunsError, Selection, group_column, finish

PAGE = 10_000  # runs per search_runs call; MLflow caps a page at 50,000


def load_trials_rest(uri: str, sel: Selection, *, finished_only: bool = True) -> pd.DataFrame:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp_ids = []
    for name in sel.experiments:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise NoRunsError(f"experiment: no experiment named {name!r} on {uri}")
        exp_ids.append(exp.experiment_id)
    runs = _search(client, exp_ids, _filter(sel, finished_only))
    groups = [group_column(k) for k in sel.group_tags]
    df = pd.DataFrame([_row(r) + tuple(r.data.tags.get(k) for k in sel.group_tags) for r in runs],
                      columns=_COLUMNS + groups)
    df = df[df["parent_run_id"].notna() & df["method"].notna()]
    if finished_only:
        df = df[df["best_dev_score"].notna()]
    for name, values in (("task", sel.tasks), ("method", sel.methods), ("backbone", sel.backbones)):
        if len(values) > 1:  # MLflow's filter language has no OR: several values are applied here
            df = df[df[name].isin(values)]
    parents = _search(client, exp_ids, f"tags.`{tag('role')}` = 'search'")
    searches = pd.DataFrame([(p.info.run_id, p.data.tags.get(tag("search_id")), p.data.tags.get(tag("algorithm")))
                             for p in parents], columns=["parent_run_id", "search_id", "algorithm"])
    return finish(df.reset_index(drop=True), searches, sel, dict(zip(exp_ids, sel.experiments)))


_COLUMNS = ["run_uuid", "experiment_id", "status", "start_time", "end_time", "parent_run_id",
            *TAG_COLUMNS, "metric", *METRIC_COLUMNS]


def _row(run) -> tuple:
    tags, metrics = run.data.tags, run.data.metrics
    return (run.info.run_id, run.info.experiment_id, run.info.status, run.info.start_time, run.info.end_time,
            tags.get(PARENT_TAG), *(tags.get(tag(k)) for k in TAG_COLUMNS), tags.get(tag("metric")), *(metrics.get(k) for k in METRIC_COLUMNS))


def _filter(sel: Selection, finished_only: bool) -> str:
    clauses = ["attributes.status = 'FINISHED'"] if finished_only else []
    for name, values in (("task", sel.tasks), ("method", sel.methods), ("backbone", sel.backbones)):
        if len(values) == 1:
            clauses.append(f"tags.`{tag(name)}` = {_quote(values[0])}")
    clauses += [f"tags.`{k}` = {_quote(v)}" for k, v in sel.tag_filters]
    return " and ".join(clauses)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"


def _search(client, exp_ids: list[str], filter_string: str) -> list:
    out, token = [], None
    while True:
        page = client.search_runs(exp_ids, filter_string, max_results=PAGE, page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out
