"""deploy/cluster.sh's start-up tells the truth: a piece that dies or does not come up in time
gives one line on stderr and a non-zero exit, and what the command started is stopped; bad
settings are refused before anything starts. (The working cluster, with authentication on, is
tests/search/test_cluster.py.) Real PostgreSQL, MLflow and Ray, on free loopback ports.
"""
from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def state():
    path = Path(tempfile.mkdtemp(prefix="q", dir="/tmp"))  # short: Ray's socket paths
    path.chmod(0o711)  # as root, PostgreSQL runs as `postgres`, which must reach its data
    yield path
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def processes_under(path: Path) -> list[psutil.Process]:
    """Live processes whose command line names the state directory."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(str(path) in a for a in p.info["cmdline"] or []) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            pass
    return found


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def test_mlflow_that_cannot_serve_fails_in_one_line_and_stops_postgres(cluster_sh, state, ports):
    pg, mlflow = ports[0](2)
    with socket.socket() as taken:  # another server holds MLflow's port
        taken.bind(("127.0.0.1", mlflow))
        taken.listen()
        proc = cluster_sh("tracking", PEFTSEARCH_STATE=state, PG_PORT=pg, MLFLOW_PORT=mlflow, PEFTSEARCH_TIMEOUT=240)
    assert proc.returncode == 1
    line = one_line(proc.stderr)
    assert line.startswith("cluster.sh: mlflow ") and str(state / "mlflow.log") in line
    assert not (state / "mlflow.pid").exists() and not processes_under(state)  # PostgreSQL stopped too
    status = cluster_sh("status", PEFTSEARCH_STATE=state, PG_PORT=pg)
    assert status.returncode == 1 and "postgres: not running" in status.stdout


def test_a_worker_whose_head_never_answers_times_out_and_is_stopped(cluster_sh, state, ports):
    gcs = ports[0](1)[0]  # nothing listens there
    (state / "secrets").mkdir(mode=0o700)
    (state / "secrets" / "ray-token").write_text("0" * 64)
    (state / "secrets" / "ray-token").chmod(0o600)
    proc = cluster_sh("worker", PEFTSEARCH_STATE=state, PEFTSEARCH_HEAD=f"127.0.0.1:{gcs}", PEFTSEARCH_TIMEOUT=20,
                      RAY_NUM_CPUS=1)
    assert proc.returncode == 1
    line = one_line(proc.stderr)
    assert line.startswith("cluster.sh: ray-worker ") and ("did not come up in 20 s" in line or "exited" in line)
    assert not processes_under(state)


@pytest.mark.parametrize("setting, message", [
    ({"PEFTSEARCH_RAY_AUTH": "maybe"}, "PEFTSEARCH_RAY_AUTH must be token or disabled"),
    ({"RAY_AUTH_TOKEN_PATH": "/nonexistent/token"}, "RAY_AUTH_TOKEN_PATH: /nonexistent/token does not exist"),
])
def test_bad_worker_settings_are_refused_before_anything_starts(cluster_sh, state, setting, message):
    proc = cluster_sh("worker", PEFTSEARCH_STATE=state, **setting)
    assert proc.returncode == 2 and message in one_line(proc.stderr)
    assert not processes_under(state)


def test_an_admin_file_others_can_read_is_refused(cluster_sh, state):
    admin = state / "admin.env"
    admin.write_text("MLFLOW_TRACKING_USERNAME=admin\nMLFLOW_TRACKING_PASSWORD=pw\n")
    admin.chmod(0o644)
    proc = cluster_sh("tracking", PEFTSEARCH_STATE=state, MLFLOW_ADMIN_FILE=admin)
    assert proc.returncode == 2
    assert one_line(proc.stderr) == f"cluster.sh: MLFLOW_ADMIN_FILE: {admin} has mode 644; it must be 0600 (chmod 600 {admin})"
    assert not (state / "pgdata").exists()
