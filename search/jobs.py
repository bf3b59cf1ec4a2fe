"""Cluster submission: a search runs as a Ray job through the Jobs API (the head's dashboard
address, http://HEAD:8265). The validated spec travels in the job's working_dir; the job's driver
runs `peftsearch run` on the head, in the output directory (default ~/peftsearch-out/NAME on the
head; `peftsearch resume` takes it), and joins the cluster (Ray sets RAY_ADDRESS for job drivers).
"""
from __future__ import annotations

import os
import shlex
import tempfile
import time
from pathlib import Path

import yaml

from search.spec import Spec
from search.uris import mask

# Set on this machine, these matter to the job too (offline hub, no telemetry).
AGENT_RETRIES = 30
PASSED_ENV = ("HF_HUB_OFFLINE", "MLFLOW_DISABLE_TELEMETRY", "RAY_USAGE_STATS_ENABLED", "TOKENIZERS_PARALLELISM")


def check_cluster_tracking(spec: Spec) -> None:
    """Trials on other nodes cannot share a SQLite file: a cluster needs a server or a database."""
    if spec.tracking.uri.startswith("sqlite:"):
        raise ValueError(f"tracking.uri: a Ray cluster's trials run on other nodes and cannot share a SQLite file; "
                         f"use an MLflow server (http://HOST:5000) or postgresql://... (got {mask(spec.tracking.uri)!r})")


def _client(address: str):
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError) as e:
        raise ValueError(f"address: cannot reach the Ray Jobs API (the head's dashboard) at {address}: "
                         f"{str(e).splitlines()[0]}") from e


def submit(spec: Spec, *, address: str, out: str | None = None) -> str:
    from search.runner import stored_spec
    from search.uris import has_secret

    check_cluster_tracking(spec)
    client = _client(address)
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    raw = stored_spec(spec)
    if has_secret(spec.tracking.uri):  # the package holds no password: the job's environment does
        raw["tracking"]["uri"] = "${MLFLOW_TRACKING_URI}"
        env["MLFLOW_TRACKING_URI"] = spec.tracking.uri
    with tempfile.TemporaryDirectory(prefix="peftsearch-job-") as tmp:
        Path(tmp, "spec.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        # The driver leaves the working_dir at once: Ray may delete it while the job still runs
        # (seen here when a worker node died), and the output directory must outlive the job.
        target = shlex.quote(out) if out else f"$HOME/peftsearch-out/{spec.name}"  # the name is [A-Za-z0-9_.-]
        cmd = f"mkdir -p {target} && cp spec.yaml {target}/spec.yaml && cd {target} && python -m search.cli run spec.yaml --out ."
        for attempt in range(AGENT_RETRIES):
            try:
                return client.submit_job(entrypoint=cmd, runtime_env={"working_dir": tmp, "env_vars": env},
                                         metadata={"peftsearch.spec": spec.name})
            except RuntimeError as e:
                # A freshly started head answers 500 "No available agent" until its job agent is up.
                if "No available agent" not in str(e) or attempt == AGENT_RETRIES - 1:
                    raise ValueError(f"address: the Ray Jobs API at {address} refused the job: {str(e).splitlines()[0]}") from e
                time.sleep(2)


def status(job_id: str, *, address: str) -> str:
    return str(_client(address).get_job_status(job_id).value)


def logs(job_id: str, *, address: str) -> str:
    return _client(address).get_job_logs(job_id)


def stop(job_id: str, *, address: str) -> bool:
    return _client(address).stop_job(job_id)
