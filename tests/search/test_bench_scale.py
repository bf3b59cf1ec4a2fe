"""`peftsearch bench scale`'s load generator, for real: PostgreSQL and an `mlflow server` on it,
started and stopped here; a real tiny trial recorded, then played by several simulated trials
through the trials' own logging code, in client processes; PostgreSQL counted at the end.

- a clean load counts exactly: one FINISHED run per trial, every metric row and param;
- the count check fails when a report is dropped, or sent twice (mutations of the generator);
- an MLflow server outage in the middle of the load loses nothing: the server is stopped and
  started again on its port while trials report (with MLflow's own HTTP retries off, so the
  retries under test are peftsearch's). The outage is short here, for CI; `bench scale
  --outage-s 240` runs the 4-minute one.
"""
from __future__ import annotations

import pytest

from search.bench_scale import Load, play, record_trial
from tracking.servers import MlflowServer, Postgres

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def recording(data_dir, tiny_bert):
    return record_trial(data_dir=str(data_dir), backbone=tiny_bert)


@pytest.fixture(scope="module")
def servers():
    pg = Postgres()
    server = None
    try:
        server = MlflowServer(pg.uri)
        yield server, pg
    finally:
        if server:
            server.close()
        pg.stop()


def test_a_clean_load_counts_exactly(recording, servers):
    server, pg = servers
    r = play(Load(trials=6, evals=4, interval=0.2, procs=2), recording, server=server, pg=pg, name="clean")
    assert r.errors == [] and r.counted.problems == []
    assert r.counted.ok and r.counted.runs == 6 and r.reports == 24 and len(recording.evals) >= 2
    assert r.p50_s > 0 and r.per_second > 0


def test_mlflow_s_flask_app_under_gunicorn_counts_exactly_too(recording, servers):
    _, pg = servers
    server = MlflowServer(pg.uri, workers=1, gunicorn=True)
    try:
        import psutil

        names = " ".join(" ".join(c.cmdline()) for c in psutil.Process(server.proc.pid).children(recursive=True))
        assert "gunicorn" in names and "uvicorn" not in names  # the server really is the other one
        r = play(Load(trials=4, evals=3, interval=0.2, procs=2), recording, server=server, pg=pg, name="gunicorn")
    finally:
        server.close()
    assert r.errors == [] and r.counted.problems == [] and r.counted.ok and r.counted.runs == 4


def test_the_count_check_fails_when_a_report_is_dropped_or_duplicated(recording, servers):
    server, pg = servers
    per_eval = sum(1 for v in recording.eval(1)[1].values() if v == v)  # that report's non-NaN metrics
    r = play(Load(trials=4, evals=3, interval=0.2, procs=2, asynchronous=False, drop=(0, 1), duplicate=(2, 1)),
             recording, server=server, pg=pg, name="mutated")
    assert not r.counted.ok
    assert r.counted.lost == per_eval and r.counted.duplicated == per_eval
    assert [p.split(":")[0] for p in r.counted.problems] == ["sim-00000", "sim-00002"]


def test_an_mlflow_outage_mid_load_loses_nothing(recording, servers, monkeypatch):
    # the server stops once half the load's metric rows are in PostgreSQL
    server, pg = servers
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the client processes inherit it
    r = play(Load(trials=4, evals=8, interval=0.5, procs=2), recording, server=server, pg=pg, name="outage",
             outage_s=8)
    assert r.outage and r.reports_in_outage > 0  # trials really reported while the server was down
    assert r.errors == [] and r.counted.problems == [] and r.counted.ok and r.counted.runs == 4
