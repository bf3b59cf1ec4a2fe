"""Errors outside the spec file, held to the same line as the spec's: a bad flag, a missing
argument, an unknown command or option, a `--backbone` that holds no model, and a hub backbone the
hub says does not exist, each one stderr line `peftsearch: error: FIELD: ...`, exit 2, no traceback,
nothing written. A hub the machine cannot reach refuses nothing: `run` starts and says the backbone
rules wait for the trial."""
from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from search.cli import main
from tests.search.test_edge import refused


@pytest.fixture
def spec_file(tmp_path, data_dir, base_spec):
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(base_spec(data_dir), sort_keys=False))
    return tmp_path


@pytest.mark.parametrize("args,expected", [
    (["validate", "spec.yaml", "--max-trials", "-1"], "--max-trials: -1 is not in the range x>=1 (see 'peftsearch validate --help')"),
    (["validate", "spec.yaml", "--max-trials", "many"], "--max-trials: 'many' is not a valid integer"),
    (["run"], "SPEC: is required, got nothing (see 'peftsearch run --help')"),
    (["validate", "spec.yaml", "--bad"], "validate: no such option '--bad' (see 'peftsearch validate --help')"),
    (["frobnicate"], "command: no such command 'frobnicate'"),
    (["evp", "--score", "best"], "--score: 'best' is not one of 'selection', 'reported'"),
    (["run", "spec.yaml", "--max-trials"], "--max-trials: requires an argument (see 'peftsearch run --help')"),
])
def test_a_usage_error_is_one_line(args, expected, spec_file):
    line = refused(args, spec_file, "")
    assert expected.lower() in line.lower(), line
    assert line.count("\n") == 0 and "Usage:" not in line and "Try " not in line


def test_a_bare_group_still_shows_its_help():
    result = CliRunner().invoke(main, [])
    assert "Usage:" in result.output and "Commands:" in result.output
    result = CliRunner().invoke(main, ["bench"])
    assert "Usage:" in result.output and "memory" in result.output


@pytest.mark.parametrize("command,backbone,expected", [
    ("methods", "/nonexistent/model", "--backbone: must be an existing model directory or a Hugging Face id"),
    ("methods", "{empty}", "--backbone: a model directory must hold config.json"),
    ("bench methods", "/nonexistent/model", "--backbone: must be an existing model directory"),
    ("bench search", "~nosuchuser/model", "--backbone: ~nosuchuser names no user of this machine"),
    ("bench convergence", "{empty}", "--backbone: a model directory must hold config.json"),
    ("bench aot-precision", "{empty}", "--backbone: a model directory must hold config.json"),
])
def test_a_backbone_option_is_checked_like_a_spec_backbone(command, backbone, expected, tmp_path, data_dir):
    """Every command's --backbone (bench's take --data-dir from PEFTSEARCH_DATA_DIR)."""
    (tmp_path / "empty").mkdir()
    where = backbone.replace("{empty}", str(tmp_path / "empty"))
    refused([*command.split(), "--backbone", where], tmp_path, expected)


def test_an_unreachable_hub_refuses_nothing(spec_file, monkeypatch):
    """HF_HUB_OFFLINE=1 (tests/conftest.py) is a hub that cannot be reached: `run` starts."""
    import search.runner

    from tests.search.test_edge_fuzz import _Outcome

    started = []
    monkeypatch.setattr(search.runner, "run_search", lambda spec, **kw: started.append(spec) or _Outcome())
    spec = yaml.safe_load((spec_file / "spec.yaml").read_text())
    (spec_file / "spec.yaml").write_text(yaml.safe_dump({**spec, "backbone": "some-org/not-cached-model"}))
    monkeypatch.chdir(spec_file)
    result = CliRunner().invoke(main, ["run", "spec.yaml", "--out", "out"])
    assert result.exit_code == 0 and len(started) == 1, result.output
    assert "the method × backbone rules are checked when a trial loads it" in result.stderr


@pytest.mark.parametrize("error,expected", [
    ("RepositoryNotFoundError", "backbone: no such model on the Hugging Face hub (or it is private), "
                                "got 'some-org/no-such-model'"),
    ("GatedRepoError", "backbone: the hub model is gated"),
])
def test_a_model_the_hub_says_does_not_exist_is_refused_before_anything_is_written(error, expected, spec_file,
                                                                                     monkeypatch):
    """A mock: no hub can be reached here, so the hub's own answer (its error class, built on a real
    404/401 response) stands in for huggingface.co."""
    import httpx2
    import huggingface_hub
    import huggingface_hub.errors

    import search.runner

    def answer(self, repo_id, **kw):
        status = 404 if error == "RepositoryNotFoundError" else 401
        response = httpx2.Response(status, request=httpx2.Request("GET", f"https://huggingface.co/api/models/{repo_id}"))
        raise getattr(huggingface_hub.errors, error)(f"{status} for {repo_id}", response=response)

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", answer)
    monkeypatch.delenv("HF_HUB_OFFLINE")  # the mock answers: nothing reaches the network
    monkeypatch.setattr(search.runner, "run_search", lambda spec, **kw: pytest.fail("the search started"))
    spec = yaml.safe_load((spec_file / "spec.yaml").read_text())
    (spec_file / "spec.yaml").write_text(yaml.safe_dump({**spec, "backbone": "some-org/no-such-model"}))
    refused(["run", "spec.yaml"], spec_file, expected)


@pytest.mark.parametrize("uri,expected", [
    ("sqlite:///nosuch.db", "--tracking-uri: no such database file"),
    ("sqlite:///notes.txt", "--tracking-uri: the file exists and is not a SQLite database"),
    ("sqlite:///other.db", "--tracking-uri: is not an MLflow tracking database"),
    ("sqlite:///empty.db", "--tracking-uri: is not an MLflow tracking database"),
    ("sqlite:///folder", "--tracking-uri: names a directory"),
    ("http://127.0.0.1:9", "--tracking-uri: cannot reach the MLflow server"),
    ("http://127.0.0.1:port", "--tracking-uri: the port must be a number in 1-65535"),
    ("bogus://x", "--tracking-uri: unsupported scheme 'bogus'"),
    ("sqlite:///~nosuchuser/mlflow.db", "--tracking-uri: ~nosuchuser names no user"),
])
@pytest.mark.parametrize("command", ["evp", "summary", "compare", "report"])
def test_the_analysis_reads_only_a_tracking_store_that_exists(command, uri, expected, tmp_path):
    """The regression: a SQLite URI naming no file made an empty database there, then a traceback
    ('no such table: experiments'); an unreachable server was retried for minutes."""
    import sqlite3

    (tmp_path / "notes.txt").write_text("not a database\n")
    (tmp_path / "empty.db").touch()
    (tmp_path / "folder").mkdir()
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.close()
    refused([command, "--experiment", "demo", "--tracking-uri", uri], tmp_path, expected)


def test_the_analysis_names_a_missing_experiment_of_a_real_store(tmp_path):
    import mlflow

    mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").create_experiment("other")
    refused(["evp", "--experiment", "demo", "--tracking-uri", "sqlite:///mlflow.db"], tmp_path,
            "experiment: no experiment named 'demo' (found: Default, other)")


@pytest.mark.integration
def test_a_plain_postgresql_uri_uses_the_installed_driver(tmp_path):
    """SQLAlchemy >= 2.1 reads postgresql:// as psycopg (3); peftsearch[postgres] installs psycopg2.
    A real PostgreSQL: the plain URI is used, and read, through psycopg2."""
    import mlflow

    from search.uris import check_tracking_uri
    from tracking.servers import Postgres

    pg = Postgres("mlflow")
    try:
        plain = pg.uri.replace("postgresql+psycopg2://", "postgresql://")
        refused(["evp", "--experiment", "demo", "--tracking-uri", plain], tmp_path,
                "--tracking-uri: is not an MLflow tracking database")
        mlflow.MlflowClient(pg.uri).create_experiment("other")  # MLflow makes its schema
        assert check_tracking_uri(plain).startswith("postgresql+psycopg2://")
        refused(["evp", "--experiment", "demo", "--tracking-uri", plain], tmp_path,
                "experiment: no experiment named 'demo'")
    finally:
        pg.stop()


@pytest.mark.parametrize("address,expected", [
    ("bogus", "--address: must be auto, the head's GCS address HOST:PORT"),
    ("127.0.0.1:99999", "--address: the port must be a number in 1-65535"),
    ("127.0.0.1:{closed}", "--address: nothing answers at 127.0.0.1:"),
    ("ray://127.0.0.1:{closed}", "--address: nothing answers at 127.0.0.1:"),
    ("ray://h:x", "--address: the port must be a number in 1-65535"),
    ("local", "--address: leave it out to start a local Ray"),
    ("http://127.0.0.1:8265", "--address: that is a Ray Jobs API (dashboard) address"),
    (":6379", "--address: must be auto"),
    ("host:", "--address: must be auto"),
    ("nosuchhost.invalid:6379", "--address: nothing answers at nosuchhost.invalid:6379"),
])
@pytest.mark.parametrize("command", ["run", "resume"])
def test_a_ray_address_is_checked_before_anything_starts(command, address, expected, spec_file):
    """The regressions: 'bogus' was Ray's 'Invalid address format' after run's first line; a port
    of 99999 hung in Ray's GCS client; 'auto' with no cluster was a traceback."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # bound, never listening: refused
        target = "spec.yaml" if command == "run" else "out"
        refused([command, target, "--address", address.replace("{closed}", str(closed))], spec_file, expected)


def test_auto_finds_no_cluster_in_one_line(spec_file, monkeypatch, tmp_path):
    """No `ray start` on this machine (Ray looks for a running GCS and for its temp dir's address file)."""
    import ray._private.services as services

    if services.find_gcs_addresses():
        pytest.skip("a Ray cluster runs on this machine")
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "no-ray"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    refused(["run", "spec.yaml", "--address", "auto"], spec_file, "--address: auto found no Ray cluster on this machine")


@pytest.mark.parametrize("command", ["status", "logs", "stop"])
def test_a_jobs_address_of_the_wrong_form_names_the_field(command, spec_file):
    """(submit reaches the same client once its spec, tracking URI included, has passed the edge.)"""
    refused([command, "job", "--address", "bogus"], spec_file,
            "address: the Ray Jobs API is the head's dashboard, http://HEAD:8265")


@pytest.mark.parametrize("out,expected", [
    ("/proc/peftsearch-out", "cannot write in /proc"),  # a pseudo file system: no new entries
    ("/sys/peftsearch-out", "cannot write in /sys"),
    ("spec.yaml/out", "is a file, not a directory"),
    ("spec.yaml", "must be a directory, got a file"),
    ("~nosuchuser/out", "~nosuchuser names no user"),
])
@pytest.mark.parametrize("command", ["run", "evp", "summary", "compare", "report"])
def test_an_output_directory_that_cannot_be_written_is_one_line(command, out, expected, spec_file):
    """The regression: run --out /proc/x wrote mlflow.db and mlartifacts, then a FileNotFoundError
    traceback; an analysis --out that is a file was a FileExistsError traceback."""
    import mlflow

    mlflow.MlflowClient(f"sqlite:///{spec_file / 'mlflow.db'}").create_experiment("demo")
    args = ["run", "spec.yaml"] if command == "run" else [command, "--experiment", "demo", "--tracking-uri",
                                                           "sqlite:///mlflow.db"]
    field = "out: " if command == "run" else "--out: "
    refused([*args, "--out", out], spec_file, field + expected if expected.startswith("must") else expected)


@pytest.mark.parametrize("uri", ["sqlite:////proc/mlflow.db", "sqlite:////sys/mlflow.db"])
def test_a_new_sqlite_database_must_be_creatable(uri, spec_file):
    refused(["validate", "spec.yaml", "--tracking-uri", uri], spec_file,
            "tracking.uri: the database cannot be created in its directory")


@pytest.mark.parametrize("name", ["PEFTSEARCH_RAY_START_TIMEOUT", "PEFTSEARCH_TRACKING_RETRY_S"])
@pytest.mark.parametrize("value", ["soon", "-5", "inf", "nan", "1e999"])
@pytest.mark.parametrize("command", ["validate", "run", "submit"])
def test_a_duration_from_the_environment_is_checked_at_the_edge(name, value, command, spec_file, monkeypatch):
    """The regression: a nan start-up wait retried Ray's start forever (nothing is >= nan)."""
    monkeypatch.setenv(name, value)
    args = [command, "spec.yaml"] + (["--address", "http://127.0.0.1:9"] if command == "submit" else [])
    refused(args, spec_file, f"{name}: must be a finite number of seconds, 0 or more, got {value!r}")


def test_resume_checks_the_environment_too(spec_file, monkeypatch):
    (spec_file / "out").mkdir()
    monkeypatch.setenv("PEFTSEARCH_TRACKING_RETRY_S", "nan")
    refused(["resume", "out"], spec_file, "PEFTSEARCH_TRACKING_RETRY_S: must be a finite number of seconds")


def test_validate_asks_the_hub_as_run_does(spec_file, monkeypatch):
    """A mock of the hub's answer, as above: validate refuses what run would."""
    import httpx2
    import huggingface_hub
    import huggingface_hub.errors

    def answer(self, repo_id, **kw):
        response = httpx2.Response(404, request=httpx2.Request("GET", f"https://huggingface.co/api/models/{repo_id}"))
        raise huggingface_hub.errors.RepositoryNotFoundError(f"404 for {repo_id}", response=response)

    spec = yaml.safe_load((spec_file / "spec.yaml").read_text())
    (spec_file / "spec.yaml").write_text(yaml.safe_dump({**spec, "backbone": "some-org/no-such-model"}))
    monkeypatch.chdir(spec_file)
    offline = CliRunner().invoke(main, ["validate", "spec.yaml"])  # HF_HUB_OFFLINE=1: a note, not a refusal
    assert offline.exit_code == 0 and "rules are checked when a trial loads it" in offline.stderr, offline.output
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", answer)
    monkeypatch.delenv("HF_HUB_OFFLINE")  # the mock answers: nothing reaches the network
    refused(["validate", "spec.yaml"], spec_file, "backbone: no such model on the Hugging Face hub")
