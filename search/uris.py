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
    return uri
