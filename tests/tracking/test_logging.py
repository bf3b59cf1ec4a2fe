"""A trial's logging path (tracking.runs.TrialRun) on a real SQLite store: one batch per
evaluation through MLflow's async queue, flushed and verified when the trial ends; bounded retries
on transient errors only. The outage and load tests against an MLflow server on PostgreSQL are in
tests/search/test_bench_scale.py."""
from __future__ import annotations

import sqlalchemy as sa
import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE

from tracking import runs


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = runs.client(uri)
    exp = runs.ensure_experiment(c, "logging")
    return uri, exp, runs.start_parent_run(c, exp, search_id="s", tags={})


def trial_run(store, **kw) -> runs.TrialRun:
    uri, exp, parent = store
    return runs.TrialRun(uri, experiment_id=exp, parent_run_id=parent, run_name="t", tags={"method": "finetune"},
                         params={"lr": 0.1, "batch_size": 8}, **kw)


def rows(uri: str, sql: str, **params):
    with sa.create_engine(uri).connect() as c:
        return c.execute(sa.text(sql), params).fetchall()


@pytest.mark.parametrize("asynchronous", [True, False])
def test_every_evaluation_lands_once_and_the_run_ends_finished(store, asynchronous):
    uri = store[0]
    with trial_run(store, asynchronous=asynchronous) as run:
        for step in range(1, 21):
            run.log_metrics({"dev_score": step / 20, "train_loss": 1 / step, "nan_part": float("nan")}, step=step)
    counts = dict(rows(uri, "SELECT key, count(*) FROM metrics WHERE run_uuid = :r GROUP BY key", r=run.run_id))
    assert counts == {"dev_score": 20, "train_loss": 20}  # NaN parts are not logged
    status = rows(uri, "SELECT status FROM runs WHERE run_uuid = :r", r=run.run_id)[0][0]
    assert status == "FINISHED" and run._pending == []


def test_verify_fails_when_the_store_lacks_the_last_evaluation(store):
    uri = store[0]
    run = trial_run(store)
    run.log_metrics({"dev_score": 0.5}, step=1)
    run.log_metrics({"dev_score": 0.6}, step=2)
    run.flush()  # all there: passes
    with sa.create_engine(uri).begin() as c:  # lose the last report behind the client's back
        c.execute(sa.text("DELETE FROM metrics WHERE run_uuid = :r AND step = 2"), {"r": run.run_id})
        c.execute(sa.text("UPDATE latest_metrics SET step = 1 WHERE run_uuid = :r"), {"r": run.run_id})
    with pytest.raises(runs.LoggingError, match="lacks dev_score"):
        run.verify()


def test_a_trial_whose_record_is_incomplete_fails_its_run(store, monkeypatch):
    uri = store[0]
    run = trial_run(store)
    run.log_metrics({"dev_score": 0.5}, step=1)
    monkeypatch.setattr(run, "verify", lambda: (_ for _ in ()).throw(runs.LoggingError("lacks dev_score")))
    with pytest.raises(runs.LoggingError):
        with run:
            pass
    assert rows(uri, "SELECT status FROM runs WHERE run_uuid = :r", r=run.run_id)[0][0] == "FAILED"


@pytest.mark.parametrize("error, transient", [
    (requests.ConnectionError("refused"), True),
    (MlflowException("API request to http://x failed with exception refused"), True),  # INTERNAL_ERROR: 500
    (MlflowException("locked", error_code=TEMPORARILY_UNAVAILABLE), True),
    (MlflowException("bad value", error_code=INVALID_PARAMETER_VALUE), False),
    (MlflowException("QueuePool limit of size 5 overflow 10 reached, connection timed out", error_code="BAD_REQUEST"),
     True),  # the server's database pool exhausted
    (ValueError("a bug"), False),
])
def test_only_connection_errors_and_5xx_are_transient(error, transient):
    assert runs.transient(error) is transient


def test_retrying_backs_off_until_the_store_answers(monkeypatch):
    sleeps, calls = [], []
    monkeypatch.setattr(runs.time, "sleep", sleeps.append)

    def flaky():
        calls.append(1)
        if len(calls) < 4:
            raise requests.ConnectionError("refused")
        return "ok"

    assert runs.retrying(flaky) == "ok" and len(calls) == 4
    assert sleeps == sorted(sleeps) and sleeps[0] >= 0.5 and sleeps[-1] >= 2.0  # 0.5, 1, 2 (+ jitter)


def test_retrying_is_bounded_and_does_not_retry_a_bad_request(monkeypatch):
    monkeypatch.setenv(runs.RETRY_ENV, "3")
    monkeypatch.setattr(runs.time, "sleep", lambda s: None)
    clock = iter(range(0, 1000))
    monkeypatch.setattr(runs.time, "monotonic", lambda: next(clock))
    with pytest.raises(requests.ConnectionError):
        runs.retrying(lambda: (_ for _ in ()).throw(requests.ConnectionError("down")))
    calls = []

    def bad():
        calls.append(1)
        raise MlflowException("bad value", error_code=INVALID_PARAMETER_VALUE)

    with pytest.raises(MlflowException):
        runs.retrying(bad)
    assert len(calls) == 1
