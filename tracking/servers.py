"""A private PostgreSQL and an `mlflow server` on it, on loopback, started and stopped by PID:
what `peftsearch bench scale` measures against. (deploy/cluster.sh starts the same pieces for a
real cluster.)"""
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what: str, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{what} did not come up in {timeout:.0f}s")


def stop_group(proc: subprocess.Popen) -> None:
    """End exactly the process group a server was started in (start_new_session)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next((str(p) for p in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} not found on PATH or under /usr/lib/postgresql")
    return found


def _as_pg_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as `postgres` then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class Postgres:
    """``initdb`` + ``pg_ctl start`` in a temporary directory; ``uri`` is a SQLAlchemy URI."""

    def __init__(self, database: str = "bench") -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))  # a short socket path
        os.chmod(self.root, 0o777)
        self.port = free_port()
        self.data = self.root / "data"
        subprocess.run(_as_pg_user([_pg_bin("initdb"), "-A", "trust", "-U", "postgres", "-D", str(self.data)]),
                       check=True, capture_output=True)
        subprocess.run(_as_pg_user([_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w",
                                    "start", "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                                    "-c max_connections=300"]), check=True, capture_output=True)
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{database}"')
        conn.close()
        self.uri = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        subprocess.run(_as_pg_user([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
                       capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


# The server's SQLAlchemy pool per worker. MLflow's default (5 + 10 overflow) runs out at 100
# concurrent trials: requests wait 30 s, then fail with 400 BAD_REQUEST. A uvicorn worker serves up
# to 40 requests at once; give each a connection (PostgreSQL's max_connections must cover
# workers x 40).
SERVER_POOL = {"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": "40", "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": "0"}


class MlflowServer:
    """``mlflow server`` on a backend store, in its own process group; ``restart`` keeps its port."""

    def __init__(self, backend_uri: str, *, workers: int = 1, port: int | None = None, gunicorn: bool = False) -> None:
        self.backend_uri, self.workers, self.port = backend_uri, workers, port or free_port()
        self.gunicorn = gunicorn  # MLflow's Flask app under gunicorn, not its FastAPI app under uvicorn
        self.artifacts = Path(tempfile.mkdtemp(prefix="mlflow-artifacts-"))
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        import requests

        mlflow = str(Path(sys.executable).parent / "mlflow")
        self.proc = subprocess.Popen([mlflow, "server", "--backend-store-uri", self.backend_uri, "--host", "127.0.0.1",
                                      "--port", str(self.port), "--workers", str(self.workers),
                                      "--artifacts-destination", str(self.artifacts),
                                      *(["--gunicorn-opts", ""] if self.gunicorn else [])],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                     # MLflow 3's job runner (7 huey consumers, for GenAI jobs) costs
                                     # over half a core here while idle; the tracking path needs none.
                                     env=os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **SERVER_POOL})
        wait_for(lambda: requests.get(f"{self.url}/health", timeout=2).status_code == 200, "mlflow server", 180)

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.artifacts, ignore_errors=True)
