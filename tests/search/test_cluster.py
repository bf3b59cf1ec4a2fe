"""A real cluster on loopback, started and stopped with deploy/cluster.sh (which stops each piece
by PID), with authentication on: PostgreSQL (scram-sha-256), an MLflow server with its basic-auth
app, a Ray head with token authentication and a second Ray worker node. Every port any of them
takes is free when the test starts (Ray's agent, runtime-env agent, client and worker ports
included), so this passes beside another Ray, MLflow or PostgreSQL. Searches train a tiny
config-built BERT on real RTE rows.

- the security checks: MLflow refuses requests without the credentials, PostgreSQL connections
  without the password; the servers listen only where they were told;
- `peftsearch submit`, `status`, `logs` and `stop`; a worker node killed mid-search has its trials
  rescheduled, the search completes, and every trial's run lands in PostgreSQL once;
- `kill -9` of a driver mid-search, then `peftsearch resume`: one finished run per trial.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import requests
import sqlalchemy as sa
import yaml

pytestmark = pytest.mark.integration


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
        time.sleep(1)
    raise TimeoutError(f"{what} did not happen in {timeout}s")


def credentials(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


RAY_PORTS = ("DASHBOARD_AGENT_PORT", "DASHBOARD_AGENT_GRPC_PORT", "RUNTIME_ENV_AGENT_PORT", "NODE_MANAGER_PORT",
             "OBJECT_MANAGER_PORT", "METRICS_EXPORT_PORT", "AUTOSCALER_METRIC_PORT", "DASHBOARD_METRIC_PORT")


class Deployment:
    """One machine with the tracking pieces and the Ray head, a second (state dir) with a worker."""

    def __init__(self, cluster_sh, free_ports, free_port_range) -> None:
        self.sh = cluster_sh
        self.root = Path(tempfile.mkdtemp(prefix="c", dir="/tmp"))  # Ray's socket paths must stay short
        self.root.chmod(0o711)  # as root, PostgreSQL runs as `postgres`, which must reach its data
        self.head_state, self.worker_state = self.root / "h", self.root / "w"
        pg, mlflow, gcs, dash, client, *rest = free_ports(5 + 2 * len(RAY_PORTS))
        self.common = {"PEFTSEARCH_HOST": "127.0.0.1", "PEFTSEARCH_TIMEOUT": 400, "RAY_NUM_CPUS": 1,
                       "RAY_NUM_GPUS": 0, "PG_PORT": pg, "MLFLOW_PORT": mlflow, "MLFLOW_WORKERS": 1}
        self.head_env = self.common | {"PEFTSEARCH_STATE": self.head_state, "RAY_PORT": gcs, "DASHBOARD_PORT": dash,
                                       "RAY_CLIENT_PORT": client} | self._node_ports(rest[:len(RAY_PORTS)], free_port_range)
        self.worker_env = self.common | {"PEFTSEARCH_STATE": self.worker_state, "PEFTSEARCH_HEAD": f"127.0.0.1:{gcs}"} \
            | self._node_ports(rest[len(RAY_PORTS):], free_port_range)
        self.gcs, self.dashboard, self.mlflow = f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}", f"http://127.0.0.1:{mlflow}"

    @staticmethod
    def _node_ports(ports: list[int], free_port_range) -> dict:
        low, high = free_port_range(40)
        return dict(zip(RAY_PORTS, ports)) | {"MIN_WORKER_PORT": low, "MAX_WORKER_PORT": high}

    def start(self) -> None:
        for command, env in (("tracking", self.head_env), ("head", self.head_env)):
            self.run(command, env)
        token = self.head_state / "secrets" / "ray-token"
        (self.worker_state / "secrets").mkdir(parents=True, mode=0o700)
        shutil.copy2(token, self.worker_state / "secrets" / "ray-token")  # as an admin would copy it
        self.run("worker", self.worker_env)
        admin = credentials(self.head_state / "secrets" / "mlflow-admin.env")
        self.client_env = os.environ | admin | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
        pg_password = (self.head_state / "secrets" / "pg-mlflow").read_text()
        self.db = f"postgresql+psycopg2://mlflow:{pg_password}@127.0.0.1:{self.common['PG_PORT']}/mlflow"

    def run(self, command: str, env: dict) -> str:
        proc = self.sh(command, **env)
        assert proc.returncode == 0, f"cluster.sh {command}: {proc.stderr[-3000:]}"
        return proc.stdout

    def pid(self, state: Path, name: str) -> int:
        return int((state / f"{name}.pid").read_text())

    def stop(self) -> None:
        self.sh("stop", **self.worker_env)
        self.sh("stop", **self.head_env)
        if not os.environ.get("PEFTSEARCH_KEEP_RAY_LOGS"):
            shutil.rmtree(self.root, ignore_errors=True)

    def cli(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "search.cli", *args], capture_output=True, text=True,
                              timeout=900, env=env or self.client_env)

    def job_state(self, job: str) -> str:
        state = self.cli("status", job, "--address", self.dashboard).stdout.strip()
        if state in ("FAILED", "STOPPED"):
            raise AssertionError(f"job {job} ended {state}: {self.cli('logs', job, '--address', self.dashboard).stdout[-3000:]}")
        return state


@pytest.fixture(scope="module")
def cluster(cluster_sh, ports):
    d = Deployment(cluster_sh, *ports)
    try:
        d.start()
        yield d
    finally:
        d.stop()


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


def listening(root_pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket that a process tree listens on."""
    procs = [psutil.Process(root_pid), *psutil.Process(root_pid).children(recursive=True)]
    pids = {p.pid for p in procs}
    return {(c.laddr.ip, c.laddr.port) for c in psutil.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.pid in pids}


def test_authentication_and_listening_addresses(cluster):
    search = f"{cluster.mlflow}/api/2.0/mlflow/experiments/search?max_results=1"
    assert requests.get(search, timeout=10).status_code == 401
    user, password = cluster.client_env["MLFLOW_TRACKING_USERNAME"], cluster.client_env["MLFLOW_TRACKING_PASSWORD"]
    assert requests.get(search, auth=(user, "wrong"), timeout=10).status_code == 401
    assert requests.get(search, auth=(user, password), timeout=10).status_code == 200
    assert (cluster.head_state / "secrets" / "mlflow-admin.env").stat().st_mode & 0o777 == 0o600

    import psycopg2

    pg = cluster.common["PG_PORT"]
    for user, password in (("mlflow", None), ("mlflow", "wrong"), ("postgres", None)):
        with pytest.raises(psycopg2.OperationalError, match="password|pg_hba"):
            psycopg2.connect(host="127.0.0.1", port=pg, user=user, password=password, dbname="mlflow").close()
    sa.create_engine(cluster.db).connect().close()  # with the password: in

    # PostgreSQL, MLflow and the dashboard listen on 127.0.0.1 only
    mlflow = listening(cluster.pid(cluster.head_state, "mlflow"))
    assert mlflow and {a for a, _ in mlflow} == {"127.0.0.1"}
    pg_pid = int((cluster.head_state / "pgdata" / "postmaster.pid").read_text().split()[0])
    assert listening(pg_pid) == {("127.0.0.1", pg)}
    ray = listening(cluster.pid(cluster.head_state, "ray-head"))
    dash = int(cluster.head_env["DASHBOARD_PORT"])
    assert {a for a, p in ray if p == dash} == {"127.0.0.1"}
    # every port the head listens on is one it was given: nothing on Ray's defaults (52365, 10001, ...)
    given = {int(cluster.head_env[k]) for k in ("RAY_PORT", "DASHBOARD_PORT", "RAY_CLIENT_PORT", *RAY_PORTS)}
    low, high = cluster.head_env["MIN_WORKER_PORT"], cluster.head_env["MAX_WORKER_PORT"]
    stray = {p for _, p in ray} - given - set(range(low, high + 1))
    assert not stray, f"the head listens on ports it was not given: {stray}"
    # Ray 2.60 binds its gRPC servers (GCS, raylet, agent) to every interface whatever the node
    # address: token authentication is what guards them. A client without the token is refused.
    probe = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address={cluster.gcs!r})"],
                           env=os.environ | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64},
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode != 0 and "Authentication token is missing or incorrect" in probe.stderr

    status = cluster.sh("status", **cluster.head_env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert {"mlflow: healthy", "ray-head: healthy", "postgres: healthy"} <= {
        line.split(" (")[0] for line in status.stdout.splitlines()}


def test_kill_9_of_the_driver_then_resume_gives_one_finished_run_per_trial(cluster, tmp_path, data_dir, tiny_bert):
    spec = write_spec(tmp_path, name="resumed", data_dir=data_dir, backbone=tiny_bert, uri=cluster.mlflow,
                      lrs=[1e-4, 3e-4, 1e-3])
    out = tmp_path / "out"
    driver = subprocess.Popen([sys.executable, "-m", "search.cli", "run", str(spec), "--out", str(out),
                               "--address", cluster.gcs], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=cluster.client_env)
    try:  # mid-search: some trial finished, others not yet
        wait_for(lambda: (trial_runs(cluster.db, "resumed").status == "FINISHED").sum() >= 1, "a finished trial", 600)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    before = trial_runs(cluster.db, "resumed")
    assert len(before) < 6 or (before.status != "FINISHED").any()  # the search really was cut short

    proc = cluster.cli("resume", str(out), "--address", cluster.gcs)
    assert proc.returncode == 0, proc.stderr[-4000:]
    after = trial_runs(cluster.db, "resumed")
    assert len(after) == 6  # 3 assignments x 2 seeds: none lost, none duplicated
    assert after.key.is_unique and set(after.status) == {"FINISHED"}


def test_submit_status_logs_stop_with_a_worker_node_killed_mid_search(cluster, tmp_path, data_dir, tiny_bert):
    # Trials long enough (a few seconds even on an idle machine) that two are seen running at once.
    spec = write_spec(tmp_path, name="submitted", data_dir=data_dir, backbone=tiny_bert, uri=cluster.mlflow,
                      lrs=[1e-4, 1e-3], epochs=40)
    proc = cluster.cli("submit", str(spec), "--address", cluster.dashboard, "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    job = proc.stdout.strip().splitlines()[-1]
    wait_for(lambda: cluster.job_state(job) and (trial_runs(cluster.db, "submitted").status == "RUNNING").sum() >= 2,
             "two running trials", 600)
    os.killpg(cluster.pid(cluster.worker_state, "ray-worker"), signal.SIGKILL)  # one of the two trials ran there
    down = wait_for(lambda: (d := cluster.sh("status", **cluster.worker_env)).returncode == 1 and d,
                    "status reporting the killed worker", 60)
    assert "ray-worker: not running" in down.stdout

    state = wait_for(lambda: (s := cluster.cli("status", job, "--address", cluster.dashboard).stdout.strip())
                     in ("SUCCEEDED", "FAILED", "STOPPED") and s, "the job's end", 900)
    log = cluster.cli("logs", job, "--address", cluster.dashboard).stdout
    assert state == "SUCCEEDED", log[-4000:]
    runs = trial_runs(cluster.db, "submitted")
    assert len(runs) == 4 and runs.key.is_unique and set(runs.status) == {"FINISHED"}
    assert "done in" in log and "4 finished, 0 failed" in log

    # stop: a second job, stopped while it runs
    spec = write_spec(tmp_path, name="stopped", data_dir=data_dir, backbone=tiny_bert, uri=cluster.mlflow,
                      lrs=[1e-4], epochs=200)
    job = cluster.cli("submit", str(spec), "--address", cluster.dashboard).stdout.strip().splitlines()[-1]
    wait_for(lambda: cluster.job_state(job) == "RUNNING", "the second job running", 300)
    stopped = cluster.cli("stop", job, "--address", cluster.dashboard)
    assert stopped.returncode == 0 and stopped.stdout.strip() == "stopping"
    wait_for(lambda: cluster.cli("status", job, "--address", cluster.dashboard).stdout.strip() == "STOPPED",
             "the second job stopped", 120)


def test_submit_without_the_ray_token_is_refused(cluster, tmp_path, data_dir, tiny_bert):
    spec = write_spec(tmp_path, name="untokened", data_dir=data_dir, backbone=tiny_bert, uri=cluster.mlflow, lrs=[1e-4])
    env = {k: v for k, v in cluster.client_env.items() if not k.startswith("RAY_AUTH")} | {"RAY_AUTH_MODE": "disabled"}
    proc = cluster.cli("submit", str(spec), "--address", cluster.dashboard, env=env)
    assert proc.returncode == 2 and "token" in proc.stderr, proc.stderr[-2000:]
    env = {k: v for k, v in cluster.client_env.items() if not k.startswith("MLFLOW_TRACKING_")}
    proc = cluster.cli("validate", str(spec), env=env)
    assert proc.returncode == 2 and "MLFLOW_TRACKING_USERNAME/PASSWORD" in proc.stderr, proc.stderr[-2000:]


def test_submit_refuses_sqlite_before_contacting_the_cluster(tmp_path, data_dir, tiny_bert):
    spec = write_spec(tmp_path, name="local", data_dir=data_dir, backbone=tiny_bert,
                      uri=f"sqlite:///{tmp_path / 'm.db'}", lrs=[1e-4])
    proc = subprocess.run([sys.executable, "-m", "search.cli", "submit", str(spec), "--address", "http://127.0.0.1:9"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "tracking.uri: a Ray cluster's trials run on other nodes" in proc.stderr
    assert not (tmp_path / "m.db").exists()
