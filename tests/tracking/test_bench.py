"""The bench database: written in bulk into MLflow's own schema, then read back identically by
our SQL reader and by MlflowClient.search_runs, with the numbers the generator put in."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from search.cli import main
from tracking.analysis import evp_curves, summarize
from tracking.bench import Layout, build_database, synthetic_trials
from tracking.rest import load_trials_rest
from tracking.store import Selection, load_trials

LAYOUT = Layout(tasks=4, methods=5, seeds=5)


@pytest.fixture(scope="module")
def bench_db(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('bench') / 'bench.db'}"
    build_database(uri, runs=2000, experiment="b", layout=LAYOUT, seed=3, chunk=700)  # chunks: 3 inserts
    return uri


def test_both_paths_read_the_same_trials_and_numbers(bench_db):
    ours = load_trials(bench_db, "b")
    theirs = load_trials_rest(bench_db, Selection(("b",)))
    assert len(ours) == 2000
    pd.testing.assert_frame_equal(ours, theirs[ours.columns], check_dtype=False)
    pd.testing.assert_frame_equal(evp_curves(ours), evp_curves(theirs))
    pd.testing.assert_frame_equal(summarize(ours), summarize(theirs))


def test_the_generated_values_come_back(bench_db):
    truth = synthetic_trials(2000, LAYOUT, seed=3)
    ours = load_trials(bench_db, "b").set_index("run_uuid").loc[truth["run_uuid"]]
    assert np.allclose(ours["best_dev_score"].to_numpy(), truth["score"].to_numpy())
    assert np.allclose(ours["wall_seconds"].to_numpy(), (truth["end"] - truth["start"]).to_numpy() / 1000)
    assert (ours["gpus"].to_numpy() == truth["gpus"].to_numpy()).all()
    s = summarize(ours.reset_index()).set_index(["task", "method"])
    medians = truth.groupby(["task", "method", "config_id"])["score"].median().groupby(["task", "method"]).max()
    assert np.allclose(s["median"].sort_index().to_numpy(), medians.sort_index().to_numpy())
    assert len(s) == 4 * 5 and set(s["n_seeds"]) == {5}


def test_layout_must_divide_the_run_count():
    with pytest.raises(ValueError, match="runs: must be a multiple of tasks × methods × seeds = 100"):
        Layout(tasks=4, methods=5, seeds=5).configs(150)


def test_bench_command_prints_its_table(tmp_path):
    r = CliRunner().invoke(main, ["bench", "analytics", "--runs", "500", "--workdir", str(tmp_path)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "| sqlalchemy (ours) | 500 |" in r.output and "| MlflowClient.search_runs | 500 |" in r.output
    assert "both paths give the same 500 curve points" in r.output and "measured at 500 runs" in r.output
