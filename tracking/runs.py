"""Writing MLflow runs: one experiment per spec name, one parent run per launch of a search, one
child run per trial, nested through MLflow's own ``mlflow.parentRunId`` tag.

These tag names are a contract users filter on (``tags.peftsearch.method = 'lora'``); keep them.
"""
from __future__ import annotations

import functools
import logging
import math
import os
import random
import re
import time
import traceback
import uuid
from typing import Any, Callable, Mapping, TypeVar

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tracking.words import count
from trainers.machine import TRACKING_RETRY_ENV, env_seconds

log = logging.getLogger(__name__)
T = TypeVar("T")

PARENT_TAG = "mlflow.parentRunId"
ERROR_TAG = "peftsearch.error"
KEY_TAG = "peftsearch.trial_key"  # the Tune trial id: stable across retries and `peftsearch resume`
PRUNED_TAG = "peftsearch.pruned"
INCOMPLETE_TAG = "peftsearch.incomplete"  # on a parent run: "false", or why the search is incomplete
TOKEN_TAG = "peftsearch.run_token"  # set at creation: a retried create_run finds the run it already made
# How long one logging call keeps retrying a tracking store that is down or answers 5xx. MLflow's
# own HTTP client retries first (MLFLOW_HTTP_REQUEST_MAX_RETRIES, about 4 minutes by default).
RETRY_ENV = TRACKING_RETRY_ENV
TAGS = ("method", "task", "backbone", "seed", "config_id", "search_id", "metric")


def tag(name: str) -> str:
    return f"peftsearch.{name}"


def client(uri: str) -> MlflowClient:
    return _client(uri, os.getpid())


@functools.lru_cache(maxsize=16)
def _client(uri: str, pid: int) -> MlflowClient:
    # One client, hence one store and one MLflow async-logging queue, per process and URI: trials
    # that reuse an actor, or the load generator's simulated trials, share its threads.
    return MlflowClient(tracking_uri=uri)


def transient(e: BaseException) -> bool:
    """A connection error, a timeout, a 5xx or an exhausted server pool: the store may come back,
    so the call is retried.
    MLflow reports a refused connection as an MlflowException (INTERNAL_ERROR, 500); SQL stores'
    OperationalError (database down, SQLite locked) as TEMPORARILY_UNAVAILABLE (503)."""
    import requests
    import sqlalchemy.exc

    if isinstance(e, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError,
                      sqlalchemy.exc.OperationalError, sqlalchemy.exc.TimeoutError)):
        return True
    # An MLflow server whose database connection pool is exhausted answers 400 BAD_REQUEST
    # ("QueuePool limit of size 5 overflow 10 reached, connection timed out"): an overload, not a
    # bad request. Seen at 100 concurrent trials on the server's default pool.
    return isinstance(e, MlflowException) and (e.get_http_status_code() >= 500 or "QueuePool limit" in str(e))


_CONFLICT = re.compile(r"IntegrityError|UNIQUE constraint failed|duplicate key value violates unique constraint")


def conflict(e: BaseException) -> bool:
    """A unique-constraint violation: a concurrent writer inserted the same row first. MLflow's
    ``log_inputs`` looks up a dataset (experiment, name, digest) and inserts it when missing, so
    two trials of one task starting together race on it; the loser's retry finds the row. A SQL
    store raises it as an MlflowException caused by IntegrityError; a server sends its message."""
    import sqlalchemy.exc

    while e is not None:
        if isinstance(e, sqlalchemy.exc.IntegrityError) or (isinstance(e, MlflowException) and _CONFLICT.search(str(e))):
            return True
        e = e.__cause__ or e.__context__
    return False


def retrying(fn: Callable[..., T], *args, what: str = "tracking call", conflicts: int = 0, **kwargs) -> T:
    """``fn(*args, **kwargs)``, retried with exponential backoff (0.5 s doubling to 30 s, jittered)
    while it fails transiently, for at most PEFTSEARCH_TRACKING_RETRY_S seconds (default 900);
    a unique-constraint conflict (see ``conflict``) is retried up to ``conflicts`` times."""
    deadline = time.monotonic() + env_seconds(RETRY_ENV)
    delay = 0.5
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - sorted by transient()
            lost_race = conflicts > 0 and conflict(e)
            if lost_race:
                conflicts -= 1
            elif not transient(e) or time.monotonic() + delay > deadline:
                raise
            log.warning("%s failed (%s); retrying in %.1fs", what, str(e).splitlines()[0][:200], delay)
            time.sleep(delay * random.uniform(1.0, 1.25))
            delay = min(delay * 2, 30.0)


def ensure_experiment(c: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    from tracking.provenance import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, set_experiment_kind

    exp = c.get_experiment_by_name(name)
    if exp is None:
        exp_id = c.create_experiment(name, artifact_location=artifact_location)
    else:
        exp_id = exp.experiment_id
        if exp.tags.get(EXPERIMENT_KIND_TAG) == EXPERIMENT_KIND:
            return exp_id
    set_experiment_kind(c, exp_id)  # MLflow 3's UI then opens its training-runs view
    return exp_id


def start_parent_run(c: MlflowClient, experiment_id: str, *, search_id: str, tags: Mapping[str, str]) -> str:
    run = c.create_run(experiment_id, run_name=search_id,
                       tags={tag("search_id"): search_id, tag("role"): "search", **tags})
    return run.info.run_id


def finish_parent_run(c: MlflowClient, run_id: str, *, failed_trials: int, total_trials: int) -> None:
    c.set_tag(run_id, tag("failed_trials"), str(failed_trials))
    c.set_tag(run_id, tag("total_trials"), str(total_trials))
    c.set_tag(run_id, INCOMPLETE_TAG, f"{failed_trials} of {count(total_trials, 'trial')} failed" if failed_trials else "false")
    status = "FAILED" if total_trials and failed_trials == total_trials else "FINISHED"
    c.set_terminated(run_id, status)


def fail_orphaned_children(c: MlflowClient, experiment_id: str, parent_run_id: str) -> int:
    """Trials whose process died without ending their run: mark them FAILED, nothing lost."""
    runs = c.search_runs([experiment_id], f"tags.`{PARENT_TAG}` = '{parent_run_id}' and attributes.status = 'RUNNING'")
    for r in runs:
        c.set_tag(r.info.run_id, ERROR_TAG, "the trial's process ended without finishing its run")
        c.set_terminated(r.info.run_id, "FAILED")
    return len(runs)


def _by_key(c: MlflowClient, experiment_id: str, parent_run_id: str, key: str, extra: str = "") -> list:
    return c.search_runs([experiment_id], f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{KEY_TAG}` = '{key}'{extra}")


def finished_attempt(c: MlflowClient, experiment_id: str, parent_run_id: str, key: str):
    """The trial's run that already FINISHED, if any: Tune runs a trial again after a resume when
    it ended after Tune's last saved state; its finished run stands, and nothing is retrained."""
    done = _by_key(c, experiment_id, parent_run_id, key, " and attributes.status = 'FINISHED'")
    return done[0] if done else None


def replace_earlier_attempts(c: MlflowClient, experiment_id: str, parent_run_id: str, key: str) -> list[str]:
    """A retried or resumed trial replaces its earlier runs (deleted, in MLflow's sense), so each
    trial has exactly one run; one still RUNNING (its process died) ends KILLED first. Returns the
    earlier attempts' errors, to keep on the new run."""
    errors = []
    for r in _by_key(c, experiment_id, parent_run_id, key):
        errors.append(r.data.tags.get(ERROR_TAG) or f"attempt ended {r.info.status}")
        if r.info.status == "RUNNING":
            c.set_tag(r.info.run_id, ERROR_TAG, "replaced by a later attempt of the same trial")
            c.set_terminated(r.info.run_id, "KILLED")
        c.delete_run(r.info.run_id)
    return errors


def fail_open_runs(c: MlflowClient, experiment_id: str, parent_run_id: str, key: str, reason: str) -> None:
    """A trial Tune ended in error whose run is still open (its worker died): FAILED, with why."""
    for r in _by_key(c, experiment_id, parent_run_id, key, " and attributes.status = 'RUNNING'"):
        c.set_tag(r.info.run_id, ERROR_TAG, reason[:4000])
        c.set_terminated(r.info.run_id, "FAILED")


def kill_open_children(c: MlflowClient, experiment_id: str, parent_run_id: str, reason: str,
                       stopped_since_ms: int | None = None) -> int:
    """The driver stopped: every open trial run ends KILLED (resume replaces it), and so do the
    runs Tune stopped on its way out (after ``stopped_since_ms``), which look pruned but are not."""
    mine = f"tags.`{PARENT_TAG}` = '{parent_run_id}'"
    open_runs = c.search_runs([experiment_id], f"{mine} and attributes.status = 'RUNNING'")
    stopped = [] if stopped_since_ms is None else c.search_runs(
        [experiment_id], f"{mine} and attributes.status = 'KILLED' and attributes.end_time >= {stopped_since_ms} "
                         f"and tags.`{PRUNED_TAG}` = 'true'")
    for r in open_runs + stopped:
        c.set_tag(r.info.run_id, ERROR_TAG, reason[:4000])
        c.set_tag(r.info.run_id, PRUNED_TAG, "false")
        c.set_terminated(r.info.run_id, "KILLED")
    return len(open_runs) + len(stopped)



def mark_incomplete(c: MlflowClient, parent_run_id: str, reason: str) -> None:
    c.set_tag(parent_run_id, INCOMPLETE_TAG, reason[:4000])
    c.set_terminated(parent_run_id, "KILLED")


def mark_resumed(c: MlflowClient, parent_run_id: str) -> None:
    """A resumed search is open again until it finishes."""
    c.set_tag(parent_run_id, INCOMPLETE_TAG, "resumed, running")
    c.update_run(parent_run_id, status="RUNNING")


def ended_children(c: MlflowClient, experiment_id: str, parent_run_id: str) -> dict[str, str]:
    """Trial key -> "finished" or "failed", for the trial runs of a search that ended so far
    (pruned runs count as finished)."""
    ended = {}
    for r in c.search_runs([experiment_id], f"tags.`{PARENT_TAG}` = '{parent_run_id}'", max_results=50000):
        if r.info.status == "FINISHED" or r.data.tags.get(PRUNED_TAG) == "true":
            ended[r.data.tags.get(KEY_TAG, r.info.run_id)] = "finished"
        elif r.info.status == "FAILED":
            ended[r.data.tags.get(KEY_TAG, r.info.run_id)] = "failed"
    return ended


def delete_runs_not_in(c: MlflowClient, experiment_id: str, parent_run_id: str, keys: set[str]) -> int:
    """Runs of trials Tune no longer knows (started after its last saved state, before a crash)."""
    gone = [r for r in c.search_runs([experiment_id], f"tags.`{PARENT_TAG}` = '{parent_run_id}'", max_results=50000)
            if r.data.tags.get(KEY_TAG) not in keys]
    for r in gone:
        c.delete_run(r.info.run_id)
    return len(gone)


def mark_pruned(c: MlflowClient, experiment_id: str, parent_run_id: str, key: str) -> None:
    for r in _by_key(c, experiment_id, parent_run_id, key, " and attributes.status = 'RUNNING'"):
        c.set_tag(r.info.run_id, PRUNED_TAG, "true")
        c.set_terminated(r.info.run_id, "KILLED")


class LoggingError(RuntimeError):
    """The tracking store did not end up with what the trial logged."""


class TrialRun:
    """A child run for one trial. As a context manager it ends FINISHED, or FAILED with the
    error in the ``peftsearch.error`` tag, and lets the exception propagate.

    Each evaluation is one ``log_batch``. With ``asynchronous`` (the default) it goes through
    MLflow's async-logging queue, so training does not wait on the server; when the trial ends,
    every batch is awaited, any that failed is re-sent synchronously (with retries: metrics carry
    their own timestamp, so a re-sent one that had landed is not duplicated), and the run is read
    back and checked before it is marked ended. Every other call is synchronous and retried."""

    def __init__(self, uri: str, *, experiment_id: str, parent_run_id: str, run_name: str,
                 tags: Mapping[str, Any], params: Mapping[str, Any], asynchronous: bool = True) -> None:
        self.client = client(uri)
        self.asynchronous = asynchronous
        self._pending: list[tuple[list[Metric], Any]] = []  # (batch, RunOperations) not yet awaited
        self._last_step: dict[str, int] = {}  # per metric key, the last step sent: checked at the end
        self._params = {k: str(v) for k, v in params.items()}
        token = uuid.uuid4().hex
        all_tags = {PARENT_TAG: parent_run_id, TOKEN_TAG: token} | {tag(k): str(v) for k, v in tags.items()}
        self.run_id = self._create(experiment_id, run_name, all_tags, token)
        self._call(self.client.log_batch, self.run_id, params=[Param(k, v) for k, v in self._params.items()])

    def _create(self, experiment_id: str, run_name: str, tags: dict[str, str], token: str) -> str:
        def create() -> str:
            # A create whose answer was lost may have made the run: find it by its token first.
            made = self.client.search_runs([experiment_id], f"tags.`{TOKEN_TAG}` = '{token}'") if attempts else []
            attempts.append(1)
            return made[0].info.run_id if made else self.client.create_run(experiment_id, run_name=run_name,
                                                                             tags=tags).info.run_id
        attempts: list[int] = []
        return retrying(create, what="create_run")

    def _call(self, fn, *args, **kwargs):
        return retrying(fn, *args, what=getattr(fn, "__name__", "tracking call"), **kwargs)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if not math.isnan(float(v))]
        if not batch:
            return
        for m in batch:
            self._last_step[m.key] = max(step, self._last_step.get(m.key, step))
        if self.asynchronous:
            try:
                self._pending.append((batch, self.client.log_batch(self.run_id, metrics=batch, synchronous=False)))
                return
            except RuntimeError as e:  # MLflow's queue shut down under us ("cannot schedule new futures after
                log.warning("run %s: async logging unavailable (%s); logging synchronously", self.run_id, e)
        self._call(self.client.log_batch, self.run_id, metrics=batch)

    def flush(self) -> None:
        """Wait for every queued batch; re-send the failed ones; then check the run in the store."""
        pending, self._pending = self._pending, []
        failed = 0
        for batch, ops in pending:
            try:
                ops.wait()
            except (MlflowException, RuntimeError):  # RuntimeError: the async queue was shut down
                failed += 1
                self._call(self.client.log_batch, self.run_id, metrics=batch)
        if failed:
            log.warning("run %s: %d async metric batches failed and were re-sent", self.run_id, failed)
        self.verify()

    def verify(self) -> None:
        """The run as the store has it: every param, and every metric key at its last step sent."""
        run = self._call(self.client.get_run, self.run_id)
        steps = {m.key: m.step for m in run.data._metric_objs}
        missing = [k for k, s in self._last_step.items() if steps.get(k) != s]
        missing += [f"param {k}" for k, v in self._params.items() if run.data.params.get(k) != v]
        if missing:
            raise LoggingError(f"run {self.run_id}: the tracking store lacks {', '.join(sorted(missing)[:10])}")

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._call(self.client.log_batch, self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifacts(self, local_dir: str, artifact_path: str) -> None:
        self._call(self.client.log_artifacts, self.run_id, local_dir, artifact_path=artifact_path)

    def _end(self, status: RunStatus) -> None:
        self._call(self.client.set_terminated, self.run_id, RunStatus.to_string(status))

    def __enter__(self) -> "TrialRun":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            self.flush()  # nothing a trial logged is left in a queue when its run ends
        except Exception as e:
            if exc is None:  # the training went well but its record did not: the trial fails
                self._close(type(e), e)
                raise
        self._close(exc_type, exc)
        return False

    def _close(self, exc_type, exc) -> None:
        if exc_type is SystemExit:  # Ray Tune ends a trial's thread this way when its scheduler prunes it
            self.set_tags({PRUNED_TAG: "true"})
            self._end(RunStatus.KILLED)
        elif exc is None:
            self._end(RunStatus.FINISHED)
        else:
            text = "".join(traceback.format_exception_only(exc_type, exc)).strip()
            self.set_tags({ERROR_TAG: text[:4000]})
            self._end(RunStatus.FAILED)
