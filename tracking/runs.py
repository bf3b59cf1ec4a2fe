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
TAGS = ("method", "task", "backbone", "seed", "config_id", "search_id", "metric")


def tag(name: str) -> str:
    return f"peftsearch.{name}"


def client(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri)


def ensure_experiment(c: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return c.create_experiment(name, artifact_location=artifact_location)


def start_parent_run(c: MlflowClient, experiment_id: str, *, search_id: str, tags: Mapping[str, str]) -> str:
    run = c.create_run(experiment_id, run_name=search_id,
                       tags={tag("search_id"): search_id, tag("role"): "search", **tags})
    return run.info.run_id


def finish_parent_run(c: MlflowClient, run_id: str, *, failed_trials: int, total_trials: int) -> None:
    c.set_tag(run_id, tag("failed_trials"), str(failed_trials))
    c.set_tag(run_id, tag("total_trials"), str(total_trials))
    status = "FAILED" if total_trials and failed_trials == total_trials else "FINISHED"
    c.set_terminated(run_id, status)


def fail_orphaned_children(c: MlflowClient, experiment_id: str, parent_run_id: str) -> int:
    """Trials whose process died without ending their run: mark them FAILED, nothing lost."""
    runs = c.search_runs([experiment_id], f"tags.`{PARENT_TAG}` = '{parent_run_id}' and attributes.status = 'RUNNING'")
    for r in runs:
        c.set_tag(r.info.run_id, ERROR_TAG, "the trial's process ended without finishing its run")
        c.set_terminated(r.info.run_id, "FAILED")
    return len(runs)


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

    def __enter__(self) -> "TrialRun":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            self.client.set_terminated(self.run_id, RunStatus.to_string(RunStatus.FINISHED))
        else:
            text = "".join(traceback.format_exception_only(exc_type, exc)).strip()
            self.set_tags({ERROR_TAG: text[:4000]})
            self.client.set_terminated(self.run_id, RunStatus.to_string(RunStatus.FAILED))
        return False
