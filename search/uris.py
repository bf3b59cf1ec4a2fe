"""Is a tracking URI usable? Checked at spec validation, without writing anything."""
from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

import sqlalchemy as sa

SCHEMES = "sqlite:///PATH, postgresql://..., mysql://..., http(s)://MLFLOW_SERVER"


def check_tracking_uri(uri: str) -> str:
    """Return the URI with a relative SQLite path made absolute (trials run in other
    directories), or raise ValueError naming the rule that the URI breaks."""
    scheme = uri.split("://", 1)[0].split("+", 1)[0] if "://" in uri else ""
    if scheme == "sqlite":
        return _sqlite(uri)
    if scheme in ("postgresql", "mysql", "mssql"):
        return _database(uri)
    if scheme in ("http", "https"):
        return _server(uri)
    if scheme in ("", "file"):
        raise ValueError(f"must be a database or server URI ({SCHEMES}); MLflow refuses file stores (got {uri!r})")
    raise ValueError(f"unsupported scheme {scheme!r}; use {SCHEMES} (got {uri!r})")


def _sqlite(uri: str) -> str:
    path = uri.split("://", 1)[1]
    if path in ("", "/", "/:memory:"):
        raise ValueError(f"an in-memory SQLite database cannot be shared with trial processes (got {uri!r})")
    file = Path(path[1:]).expanduser().resolve()  # sqlite:///rel.db -> rel.db; sqlite:////abs.db -> /abs.db
    if not file.parent.is_dir():
        raise ValueError(f"the database's directory does not exist (got {uri!r})")
    if not os.access(file if file.exists() else file.parent, os.W_OK):
        raise ValueError(f"the database is not writable (got {uri!r})")
    return f"sqlite:///{file}"


def _database(uri: str) -> str:
    try:
        engine = sa.create_engine(uri)
    except (ImportError, sa.exc.NoSuchModuleError, sa.exc.ArgumentError) as e:
        hint = " (pip install 'peftsearch[postgres]')" if uri.startswith("postgresql") else ""
        raise ValueError(f"cannot use this database driver{hint}: {e} (got {uri!r})") from e
    try:
        with engine.connect():
            pass
    except sa.exc.SQLAlchemyError as e:
        raise ValueError(f"cannot connect to the database: {str(e).splitlines()[0]} (got {uri!r})") from e
    finally:
        engine.dispose()
    return uri


def _server(uri: str) -> str:
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as r:
            if r.status != 200:
                raise ValueError(f"the MLflow server's /health answered {r.status} (got {uri!r})")
    except (urllib.error.URLError, OSError) as e:
        raise ValueError(f"cannot reach the MLflow server: {getattr(e, 'reason', e)} (got {uri!r})") from e
    try:
        _server_credentials(uri)
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            raise ValueError(f"the MLflow server refused the credentials in MLFLOW_TRACKING_USERNAME/PASSWORD "
                             f"({e.code}); set them to an account of that server (got {uri!r})") from e
    return uri


def _server_credentials(uri: str) -> None:
    """A server with authentication (MLflow's basic-auth app) answers 401 without the credentials
    that MLflow's client reads from MLFLOW_TRACKING_USERNAME/PASSWORD: check them here, once."""
    import base64

    req = urllib.request.Request(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1")
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    urllib.request.urlopen(req, timeout=5).close()
