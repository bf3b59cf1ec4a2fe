"""Secrets never leave the spec: a real search on PostgreSQL whose tracking URI holds a planted
password; then every line printed, every file under the working and output directories, every
text value in the tracking database and the Ray session's logs are searched for it."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from search.uris import mask, redact

pytestmark = pytest.mark.integration
PLANTED = "Pl4nted-s3cret-9f2e"
# The same, with what a password may hold once URL-encoded: a space, quotes, '@', ':' and '%'. It
# must be found nowhere, neither as written in the URI nor decoded (as a driver would quote it).
SPECIAL = f"{PLANTED} '\"@:%x"
ENCODED = urllib.parse.quote(SPECIAL, safe="")


@pytest.mark.parametrize("uri", [
    f"postgresql+psycopg2://u:{ENCODED}@127.0.0.1:9/db",  # encoded specials: the driver cannot connect
    f"postgresql+psycopg2://u@127.0.0.1:9/db?password={ENCODED}",  # a query-string password
    f"http://u:{ENCODED}@127.0.0.1:9",  # credentials in a server URI: sent as a Basic header
    f"postgresql://u:{PLANTED}@x@127.0.0.1:9/db",  # a raw '@': refused
    f"postgresql://u:{PLANTED} x@127.0.0.1:9/db",  # a raw space: refused
    f"http://u:{PLANTED}/x@127.0.0.1:9",  # a raw '/': urllib reads a port, and says so
])
def test_a_refused_uri_shows_no_password(uri, tmp_path):
    from click.testing import CliRunner

    from search.cli import main

    spec = {"name": "s", "backbone": "org/m", "tasks": ["rte"], "methods": {"finetune": {"lr": 1e-3}},
            "tracking": {"uri": uri}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    for command in ("validate", "run"):
        r = CliRunner().invoke(main, [command, str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "out")]
                               if command == "run" else [command, str(tmp_path / "spec.yaml")])
        assert r.exit_code == 2 and len(r.stderr.splitlines()) == 1, r.output
        assert PLANTED not in r.output and "Pl4nted" not in r.output and "***" in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


def test_mask_and_redact():
    assert mask(f"postgresql+psycopg2://u:{PLANTED}@h:5432/db") == "postgresql+psycopg2://u:***@h:5432/db"
    assert mask("http://h:5000") == "http://h:5000" and mask("sqlite:////a/b.db") == "sqlite:////a/b.db"
    line = f"cannot connect to 'mysql://root:{PLANTED}@db/x' or https://a:b@c/"
    assert PLANTED not in redact(line) and "https://a:***@c/" in redact(line)


def _files_holding(root: Path, secret: bytes) -> list[str]:
    hits = []
    for p in root.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink() and secret in p.read_bytes():
                hits.append(str(p))
        except OSError:
            continue
    return hits


def _database_values_holding(uri: str, secret: str) -> list[str]:
    engine = sa.create_engine(uri)
    meta = sa.MetaData()
    meta.reflect(engine)
    hits = []
    with engine.connect() as c:
        for table in meta.sorted_tables:
            for row in c.execute(table.select()):
                if any(secret in str(v) for v in row):
                    hits.append(table.name)
    engine.dispose()
    return hits


def test_a_planted_password_is_found_nowhere(tmp_path, data_dir, tiny_bert, postgres_server):
    uri = postgres_server("secrets").replace("postgres@", f"postgres:{ENCODED}@")  # trust auth ignores it
    spec = {"name": "secrets", "backbone": tiny_bert, "data": {"source": "local", "dir": str(data_dir)},
            "tasks": ["rte"], "methods": {"finetune": {"lr": [1e-3]}}, "seeds": [0, 1],
            "training": {"max_epochs": 1, "patience": 1, "batch_size": 8, "max_length": 32,
                         "max_train_examples": 8, "max_eval_examples": 8, "save_model": True},
            "tracking": {"uri": uri}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    started = time.time()
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "search.cli", "run", "spec.yaml", "--out", "out"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 finished, 0 failed" in proc.stderr and "postgres:***@" in proc.stderr
    assert PLANTED not in proc.stdout + proc.stderr  # a fragment of both forms, encoded and decoded
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("removed: the spec itself is where the secret may live\n")
    assert _files_holding(tmp_path, PLANTED.encode()) == []  # out/search.json, out/ray, artifacts, outputs
    assert _database_values_holding(uri, PLANTED) == []  # tags, params, the spec.yaml artifact's URI
    sessions = [p for p in Path("/tmp/ray").glob("session_2*") if p.stat().st_mtime >= started - 5]
    assert sessions, "the search's Ray session directory was not found"
    for s in sessions:
        assert _files_holding(s / "logs", PLANTED.encode()) == []
    # resume needs the URI again, and says so in one line, before Ray starts
    proc = subprocess.run([sys.executable, "-m", "search.cli", "resume", "out"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "give it again with --tracking-uri or MLFLOW_TRACKING_URI" in proc.stderr and PLANTED not in proc.stderr


def test_a_submitted_package_holds_no_password(postgres_server, monkeypatch):
    """submit writes the job's spec.yaml with ${MLFLOW_TRACKING_URI}; the password travels in the
    job's environment. The Jobs client is replaced by a recorder: no cluster is started here
    (tests/search/test_cluster.py submits to a real one)."""
    from search import jobs
    from search.spec import parse_spec

    seen = {}

    class Client:
        def submit_job(self, *, entrypoint, runtime_env, metadata):
            seen["spec"] = Path(runtime_env["working_dir"], "spec.yaml").read_text()
            seen["env"] = runtime_env["env_vars"]
            return "job-1"

    monkeypatch.setattr(jobs, "_client", lambda address: Client())
    uri = postgres_server("submitted").replace("postgres@", f"postgres:{PLANTED}@")
    spec = parse_spec({"name": "s", "backbone": "org/m", "tasks": ["rte"], "methods": {"finetune": {"lr": 1e-3}},
                       "resources": {"malloc": "lean"}, "tracking": {"uri": uri}})
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert jobs.submit(spec, address="http://head:8265") == "job-1"
    assert seen["env"]["MALLOC_MMAP_THRESHOLD_"] == "2097152"  # resources.malloc reaches the job's workers too
    assert PLANTED not in seen["spec"] and "${MLFLOW_TRACKING_URI}" in seen["spec"]
    assert seen["env"]["MLFLOW_TRACKING_URI"] == uri
