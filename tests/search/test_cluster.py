"""A real local cluster on loopback, started and stopped here by PID: PostgreSQL (initdb, pg_ctl),
an `mlflow server` on it, a Ray head (with its dashboard, for the Jobs API) and a second Ray
worker node. Searches train a tiny config-built BERT on real RTE rows.

- `peftsearch submit` runs a search as a Ray job; a worker node killed mid-search has its trials
  rescheduled, the search completes, and every trial's run lands in PostgreSQL.
- `kill -9` of a driver mid-search, then `peftsearch resume`: one finished run per trial.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import requests
import sqlalchemy as sa
import yaml

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


def port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what: str, timeout: float = 120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if value := check():
                return value
        except AssertionError:
            raise
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not happen in {timeout}s")


def stop_group(proc: subprocess.Popen) -> None:
    """Each server runs in its own process group (start_new_session); end exactly that group."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def postgres(postgres_server) -> str:
    return postgres_server("cluster")


@pytest.fixture(scope="module")
def mlflow_server(postgres, tmp_path_factory):
    p, art = port(), tmp_path_factory.mktemp("artifacts")
    proc = subprocess.Popen([str(BIN / "mlflow"), "server", "--backend-store-uri", postgres, "--host", "127.0.0.1",
                             "--port", str(p), "--workers", "1", "--artifacts-destination", str(art)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{p}"
    try:
        wait_for(lambda: requests.get(f"{url}/health", timeout=2).status_code == 200, "mlflow server", 180)
        yield url
    finally:
        stop_group(proc)


class Cluster:
    def __init__(self) -> None:
        self.temp = tempfile.mkdtemp(prefix="r", dir="/tmp")  # Ray's socket paths must stay short
        self.gcs, self.dash = port(), port()
        self.head = self._start("--head", f"--port={self.gcs}", "--include-dashboard=true",
                                "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dash}", f"--temp-dir={self.temp}")
        self.dashboard = f"http://127.0.0.1:{self.dash}"
        wait_for(lambda: requests.get(f"{self.dashboard}/api/version", timeout=2).ok, "ray dashboard", 180)
        # Its own temp dir: a node that stops cleans its runtime resources (the job's working_dir!)
        self.worker_temp = tempfile.mkdtemp(prefix="w", dir="/tmp")
        self.worker = self._start(f"--address=127.0.0.1:{self.gcs}", f"--temp-dir={self.worker_temp}")
        wait_for(lambda: len(self.alive_nodes()) == 2, "the worker node joining", 120)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs}"

    def _start(self, *args: str) -> subprocess.Popen:
        # --block keeps `ray start` in the foreground, so its process group is ours to end.
        return subprocess.Popen([str(BIN / "ray"), "start", "--block", "--num-cpus=1", "--num-gpus=0",
                                 "--object-store-memory=150000000", "--disable-usage-stats", *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                # as from an activated virtualenv: job entrypoints run `python`
                                env=os.environ | {"PATH": f"{BIN}:{os.environ.get('PATH', '')}"})

    def job_state(self, job: str) -> str:
        state = requests.get(f"{self.dashboard}/api/jobs/{job}", timeout=5).json()["status"]
        if state in ("FAILED", "STOPPED"):
            raise AssertionError(f"job {job} ended {state}: {self.job_logs(job)[-3000:]}")
        return state

    def job_logs(self, job: str) -> str:
        return requests.get(f"{self.dashboard}/api/jobs/{job}/logs", timeout=5).json()["logs"]

    def alive_nodes(self) -> list:
        nodes = requests.get(f"{self.dashboard}/nodes?view=summary", timeout=5).json()["data"]["summary"]
        return [n for n in nodes if n["raylet"]["state"] == "ALIVE"]

    def stop(self) -> None:
        stop_group(self.worker)
        stop_group(self.head)
        if not os.environ.get("PEFTSEARCH_KEEP_RAY_LOGS"):
            shutil.rmtree(self.temp, ignore_errors=True)
            shutil.rmtree(self.worker_temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    c = Cluster()
    try:
        yield c
    finally:
        c.stop()


def write_spec(tmp: Path, *, name: str, data_dir: Path, backbone: str, uri: str, lrs: list[float],
               epochs: int = 1) -> Path:
    spec = {
        "name": name, "backbone": backbone, "data": {"source": "local", "dir": str(data_dir)}, "tasks": ["rte"],
        "methods": {"finetune": {"lr": lrs}}, "seeds": [0, 1],
        "training": {"max_epochs": epochs, "patience": epochs + 1, "batch_size": 4, "max_length": 48,
                     "max_train_examples": 32, "max_eval_examples": 16, "eval_every": 2},
        "search": {"algorithm": "grid", "max_concurrent": 2, "max_failures": 2},
        "resources": {"cpu": 1}, "tracking": {"uri": uri},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.cli", *args], capture_output=True, text=True,
                          timeout=600, **kw)


def trial_runs(db: str, experiment: str) -> pd.DataFrame:
    """Active child runs of an experiment, read straight from PostgreSQL."""
    sql = sa.text("""SELECT r.run_uuid, r.status, k.value AS key FROM runs r
        JOIN experiments e ON e.experiment_id = r.experiment_id
        JOIN tags p ON p.run_uuid = r.run_uuid AND p.key = 'mlflow.parentRunId'
        LEFT JOIN tags k ON k.run_uuid = r.run_uuid AND k.key = 'peftsearch.trial_key'
        WHERE e.name = :e AND r.lifecycle_stage = 'active'""")
    engine = sa.create_engine(db)
    try:
        with engine.connect() as c:
            return pd.DataFrame(c.execute(sql, {"e": experiment}).fetchall(), columns=["run_uuid", "status", "key"])
    finally:
        engine.dispose()


def test_kill_9_of_the_driver_then_resume_gives_one_finished_run_per_trial(
        cluster, mlflow_server, postgres, tmp_path, data_dir, tiny_bert):
    spec = write_spec(tmp_path, name="resumed", data_dir=data_dir, backbone=tiny_bert, uri=mlflow_server,
                      lrs=[1e-4, 3e-4, 1e-3])
    out = tmp_path / "out"
    driver = subprocess.Popen([sys.executable, "-m", "search.cli", "run", str(spec), "--out", str(out),
                               "--address", cluster.address], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # mid-search: some trial finished, others not yet
        wait_for(lambda: (trial_runs(postgres, "resumed").status == "FINISHED").sum() >= 1, "a finished trial", 400)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    before = trial_runs(postgres, "resumed")
    assert len(before) < 6 or (before.status != "FINISHED").any()  # the search really was cut short

    proc = cli("resume", str(out), "--address", cluster.address)
    assert proc.returncode == 0, proc.stderr[-4000:]
    after = trial_runs(postgres, "resumed")
    assert len(after) == 6  # 3 assignments x 2 seeds: none lost, none duplicated
    assert after.key.is_unique and set(after.status) == {"FINISHED"}


def test_submit_with_a_worker_node_killed_mid_search(cluster, mlflow_server, postgres, tmp_path, data_dir, tiny_bert):
    # Trials long enough (a few seconds even on an idle machine) that two are seen running at once.
    spec = write_spec(tmp_path, name="submitted", data_dir=data_dir, backbone=tiny_bert, uri=mlflow_server,
                      lrs=[1e-4, 1e-3], epochs=40)
    proc = cli("submit", str(spec), "--address", cluster.dashboard, "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    job = proc.stdout.strip().splitlines()[-1]
    wait_for(lambda: cluster.job_state(job) and (trial_runs(postgres, "submitted").status == "RUNNING").sum() >= 2,
             "two running trials", 400)
    stop_group(cluster.worker)  # one of the two running trials was on the worker node
    state = wait_for(lambda: (s := cli("status", job, "--address", cluster.dashboard).stdout.strip())
                     in ("SUCCEEDED", "FAILED", "STOPPED") and s, "the job's end", 500)
    log = cli("logs", job, "--address", cluster.dashboard).stdout
    assert state == "SUCCEEDED", log[-4000:]
    runs = trial_runs(postgres, "submitted")
    assert len(runs) == 4 and runs.key.is_unique and set(runs.status) == {"FINISHED"}
    assert "done in" in log and "4 finished, 0 failed" in log


def test_submit_refuses_sqlite_before_contacting_the_cluster(tmp_path, data_dir, tiny_bert):
    spec = write_spec(tmp_path, name="local", data_dir=data_dir, backbone=tiny_bert,
                      uri=f"sqlite:///{tmp_path / 'm.db'}", lrs=[1e-4])
    proc = cli("submit", str(spec), "--address", "http://127.0.0.1:9")
    assert proc.returncode == 2 and "tracking.uri: a Ray cluster's trials run on other nodes" in proc.stderr
    assert not (tmp_path / "m.db").exists()
