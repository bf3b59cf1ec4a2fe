"""Cluster submission: a search runs as a Ray job through the Jobs API (the head's dashboard
address, http://HEAD:8265). The validated spec travels in the job's working_dir; the job's driver
runs `peftsearch run` on the head, in the output directory (default ~/peftsearch-out/NAME on the
head; `peftsearch resume` takes it), and joins the cluster (Ray sets RAY_ADDRESS for job drivers).

A head with token authentication (RAY_AUTH_MODE=token) needs its token here too: Ray's client
reads RAY_AUTH_TOKEN_PATH (or RAY_AUTH_TOKEN). MLflow credentials set here
(MLFLOW_TRACKING_USERNAME/PASSWORD) travel to the job's driver and trials.

`python -m search.jobs nodes --address GCS [--temp-dir DIR | --count N]` is the start-up check of
deploy/cluster.sh and the Slurm launcher: is this node (by its temp dir) ALIVE, are N nodes?
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

from typing import TYPE_CHECKING

from search.uris import mask
from tracking.words import count

if TYPE_CHECKING:  # the `nodes` check must start fast: search.spec pulls in torch
    from search.spec import Spec

# Set on this machine, these matter to the job too (offline hub, no telemetry).
AGENT_RETRIES = 30
PASSED_ENV = ("HF_HUB_OFFLINE", "MLFLOW_DISABLE_TELEMETRY", "RAY_USAGE_STATS_ENABLED", "TOKENIZERS_PARALLELISM",
              "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def passed_env() -> dict[str, str]:
    """The PASSED_ENV variables set here, for a job's or a driver's runtime_env: Ray's workers
    inherit their node's environment, not the driver's."""
    return {k: os.environ[k] for k in PASSED_ENV if k in os.environ}


def driver_runtime_env(worker_env: dict[str, str] | None = None) -> dict | None:
    """For ray.init of a driver outside a job: the PASSED_ENV variables and WORKER_ENV (inside a
    job, the job's runtime_env already has these, and Ray refuses the same variable twice)."""
    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    env = passed_env() | (worker_env or {})
    return {"env_vars": env} if env and RAY_JOB_CONFIG_JSON_ENV_VAR not in os.environ else None


def check_cluster_tracking(spec: Spec) -> None:
    """Trials on other nodes cannot share a SQLite file: a cluster needs a server or a database."""
    if spec.tracking.uri.startswith("sqlite:"):
        raise ValueError(f"tracking.uri: a Ray cluster's trials run on other nodes and cannot share a SQLite file; "
                         f"use an MLflow server (http://HOST:5000) or postgresql://... (got {mask(spec.tracking.uri)!r})")


def _client(address: str):
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except AuthenticationError as e:
        raise ValueError(f"address: the Ray head at {address} refused the token; set RAY_AUTH_MODE=token and "
                         f"RAY_AUTH_TOKEN_PATH to a copy of the cluster's token ({str(e).split('.')[0]})") from e
    except (ConnectionError, RuntimeError) as e:
        raise ValueError(f"address: cannot reach the Ray Jobs API (the head's dashboard) at {address}: "
                         f"{str(e).splitlines()[0]}") from e
    except ValueError as e:  # Ray's "Invalid address format: ..."
        raise ValueError(f"address: the Ray Jobs API is the head's dashboard, http://HEAD:8265 "
                         f"({(str(e).splitlines() or [type(e).__name__])[0]}), got {address!r}") from None


def submit(spec: Spec, *, address: str, out: str | None = None) -> str:
    import yaml

    from search.runner import stored_spec
    from search.uris import has_secret

    check_cluster_tracking(spec)
    from trainers.memory import worker_env

    client = _client(address)
    env = passed_env() | worker_env(spec.resources.malloc)
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


def alive_nodes(gcs: str) -> list:
    """The GCS's ALIVE nodes, read without starting a driver (ray.nodes() would start one)."""
    from ray._raylet import GcsClient

    return [n for n in GcsClient(address=gcs).get_all_node_info(timeout=5).values() if n.state == 0]  # 0: ALIVE


def _nodes_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m search.jobs nodes", description="Exit 0 when the nodes are up.")
    p.add_argument("--address", required=True, help="the GCS address, host:port")
    p.add_argument("--temp-dir", help="this node's --temp-dir: is it ALIVE?")
    p.add_argument("--count", type=int, help="are at least this many nodes ALIVE?")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    try:
        nodes = alive_nodes(args.address)
    except Exception as e:  # noqa: BLE001 - not up (yet): the caller polls
        print(f"nodes: {args.address}: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 1
    mine = [n for n in nodes if args.temp_dir and n.temp_dir.rstrip("/") == args.temp_dir.rstrip("/")]
    if not args.quiet:
        print(f"{count(len(nodes), 'node')} alive" + (f"; this node {'alive' if mine else 'not alive'}" if args.temp_dir else ""))
    return 0 if (not args.temp_dir or mine) and len(nodes) >= (args.count or 0) else 1


if __name__ == "__main__":
    if sys.argv[1:2] != ["nodes"]:
        sys.exit("usage: python -m search.jobs nodes --address GCS [--temp-dir DIR] [--count N]")
    sys.exit(_nodes_main(sys.argv[2:]))
