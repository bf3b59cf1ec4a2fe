"""Writing MLflow runs: one experiment per spec name, one parent run per launch of a search, one
child run per trial, nested through MLflow's own ``mlflow.parentRunId`` tag.

These tag names are a contract users filter on (``tags.peftsearch.method = 'lora'``); keep them.
"""
from __future__ import annotations

import math
import time
import traceback
from typing import Any, Mapping

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

PARENT_TAG = "mlflow.parentRunId"
ERROR_TAG = "peftsearch.error"
KEY_TAG = "peftsearch.trial_key"  # the Tune trial id: stable across retries and `peftsearch resume`
PRUNED_TAG = "peftsearch.pruned"
INCOMPLETE_TAG = "peftsearch.incomplete"  # on a parent run: "false", or why the search is incomplete
TAGS = ("method", "task", "backbone", "seed", "config_id", "search_id", "metric")


def tag(name: str) -> str:
    return f"peftsearch.{name}"


def client(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri)


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
    c.set_tag(run_id, INCOMPLETE_TAG, f"{failed_trials} of {total_trials} trials failed" if failed_trials else "false")
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


def ended_children(c: MlflowClient, experiment_id: str, parent_run_id: str) -> tuple[int, int]:
    """(finished, failed) trial runs of a search so far, pruned runs counted as finished."""
    done = c.search_runs([experiment_id], f"tags.`{PARENT_TAG}` = '{parent_run_id}'", max_results=50000)
    finished = sum(r.info.status == "FINISHED" or r.data.tags.get(PRUNED_TAG) == "true" for r in done)
    return finished, sum(r.info.status == "FAILED" for r in done)


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


class TrialRun:
    """A child run for one trial. As a context manager it ends FINISHED, or FAILED with the
    error in the ``peftsearch.error`` tag, and lets the exception propagate."""

    def __init__(self, uri: str, *, experiment_id: str, parent_run_id: str, run_name: str,
                 tags: Mapping[str, Any], params: Mapping[str, Any]) -> None:
        self.client = client(uri)
        all_tags = {PARENT_TAG: parent_run_id} | {tag(k): str(v) for k, v in tags.items()}
        self.run_id = self.client.create_run(experiment_id, run_name=run_name, tags=all_tags).info.run_id
        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if not math.isnan(float(v))]
        self.client.log_batch(self.run_id, metrics=batch)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifacts(self, local_dir: str, artifact_path: str) -> None:
        self.client.log_artifacts(self.run_id, local_dir, artifact_path=artifact_path)

    def __enter__(self) -> "TrialRun":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is SystemExit:  # Ray Tune ends a trial's thread this way when its scheduler prunes it
            self.set_tags({PRUNED_TAG: "true"})
            self.client.set_terminated(self.run_id, RunStatus.to_string(RunStatus.KILLED))
        elif exc is None:
            self.client.set_terminated(self.run_id, RunStatus.to_string(RunStatus.FINISHED))
        else:
            text = "".join(traceback.format_exception_only(exc_type, exc)).strip()
            self.set_tags({ERROR_TAG: text[:4000]})
            self.client.set_terminated(self.run_id, RunStatus.to_string(RunStatus.FAILED))
        return False
