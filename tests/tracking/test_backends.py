"""The SQL reader on both databases it supports: the same generated trials, written in bulk into
MLflow's schema on SQLite and on a real PostgreSQL, read back identically with filters."""
from __future__ import annotations

import pandas as pd
import pytest

from tracking.analysis import evp_curves, summarize
from tracking.bench import Layout, build_database
from tracking.store import NoRunsError, Selection, load_trials

LAYOUT = Layout(tasks=3, methods=4, seeds=5)


@pytest.fixture(scope="module")
def both(tmp_path_factory, postgres_uri):
    sqlite = f"sqlite:///{tmp_path_factory.mktemp('backends') / 'mlflow.db'}"
    for uri in (sqlite, postgres_uri):
        build_database(uri, runs=600, experiment="x", layout=LAYOUT, seed=5)
        build_database(uri, runs=300, experiment="y", layout=LAYOUT, seed=6)
    return sqlite, postgres_uri


@pytest.mark.parametrize("selection", [
    Selection(("x",)),
    Selection(("x", "y"), tasks=("rte", "cola"), methods=("lora",)),
    Selection(("x", "y"), tags=(("gpus", "1.0"),), group_by=("experiment",)),
])
def test_sqlite_and_postgres_agree(both, selection):
    sqlite, pg = (load_trials(uri, selection) for uri in both)
    assert len(sqlite) > 0
    assigned = ["experiment_id", "parent_run_id", "search_run_id"]  # ids MLflow made: differ per database
    pd.testing.assert_frame_equal(sqlite.drop(columns=assigned), pg.drop(columns=assigned), check_dtype=False)
    assert pg["search_run_id"].notna().all() and set(pg["algorithm"]) == {"grid"}
    pd.testing.assert_frame_equal(summarize(sqlite), summarize(pg))
    pd.testing.assert_frame_equal(evp_curves(sqlite), evp_curves(pg))


def test_filters_on_postgres(both):
    _, pg = both
    t = load_trials(pg, Selection(("x", "y"), tasks=("rte",), tags=(("gpus", "1.0"),)))
    assert set(t["task"]) == {"rte"} and set(t["gpus"]) == {1.0}
    assert len(t) == (600 + 300) // 3 // 2  # one task of three; half the methods ran on a GPU
    with pytest.raises(NoRunsError, match="no experiment named 'z'"):
        load_trials(pg, "z")
