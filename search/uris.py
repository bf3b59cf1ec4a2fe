"""Is a tracking URI usable? Checked at spec validation, without writing anything. And: a
password in a URI never leaves the spec (``mask``, ``redact``)."""
from __future__ import annotations

import os
import re
import urllib.error
import urllib.parse
import urllib.request

from search.paths import checked_path, probe

SCHEMES = "sqlite:///PATH, postgresql://..., mysql://..., http(s)://MLFLOW_SERVER"
MASK = "***"
_SQLITE_HEADER = b"SQLite format 3\x00"
# scheme://user:PASSWORD@host: the password is whatever lies between the user's ':' and the last '@'
_SECRET = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@'\"]*:)(?P<secret>[^\s'\"]*)(?P<at>@)")


def mask(uri: str) -> str:
    """The URI with its password, if any, replaced by ***."""
    return redact(uri)


def redact(text: str) -> str:
    """Every URI password in a line of text replaced by *** (for anything we print or store)."""
    return _SECRET.sub(lambda m: m["head"] + MASK + m["at"], text)


def has_secret(uri: str) -> bool:
    return mask(uri) != uri


def check_tracking_uri(uri: str) -> str:
    """Return the URI with a relative SQLite path made absolute (trials run in other
    directories), or raise ValueError naming the rule that the URI breaks (password masked)."""
    shown = mask(uri)
    if any(c.isspace() or c == "\x00" for c in uri):
        raise ValueError(f"must not contain spaces or control characters, got {shown!r}")
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
    if scheme == "sqlite":
        return _sqlite(uri)
    if scheme in ("", "file"):
        raise ValueError(f"must be a database or server URI ({SCHEMES}); MLflow refuses file stores, got {shown!r}")
    if scheme not in ("postgresql", "mysql", "mssql", "http", "https"):
        raise ValueError(f"unsupported scheme {scheme!r}; use {SCHEMES}, got {shown!r}")
    parts = _parse(uri)
    return _server(uri, parts) if scheme in ("http", "https") else _database(uri)


def _parse(uri: str) -> urllib.parse.SplitResult:
    shown = mask(uri)
    try:
        parts = urllib.parse.urlsplit(uri)
        parts.port  # noqa: B018  (raises on a port that is not a number in 0-65535)
    except ValueError as e:
        raise ValueError(f"the port must be a number in 1-65535 ({e}), got {shown!r}") from None
    if not parts.hostname:
        raise ValueError(f"names no host, got {shown!r}")
    if parts.port == 0:
        raise ValueError(f"the port must be a number in 1-65535, got {shown!r}")
    return parts


def _sqlite(uri: str) -> str:
    shown = mask(uri)
    path = uri.split("://", 1)[1].split("?", 1)[0]
    if path in ("", "/", "/:memory:"):
        raise ValueError(f"an in-memory SQLite database cannot be shared with trial processes, got {shown!r}")
    if not path.startswith("/"):
        raise ValueError(f"a SQLite URI is sqlite:///RELATIVE.db or sqlite:////ABSOLUTE.db, got {shown!r}")
    file = checked_path("", path[1:], shown=shown).resolve()  # sqlite:///rel.db -> rel.db; sqlite:////abs -> /abs
    kind = probe(file, shown)
    if kind == "dir":
        raise ValueError(f"names a directory, not a database file, got {shown!r}")
    if kind == "file":
        with open(file, "rb") as f:
            head = f.read(len(_SQLITE_HEADER))
        if head and head != _SQLITE_HEADER:
            raise ValueError(f"the file exists and is not a SQLite database, got {shown!r}")
    elif kind is not None:
        raise ValueError(f"names a {kind}, not a database file, got {shown!r}")
    elif probe(file.parent, shown) != "dir":
        raise ValueError(f"the database's directory does not exist, got {shown!r}")
    if not os.access(file if kind else file.parent, os.W_OK):
        raise ValueError(f"the database is not writable, got {shown!r}")
    return f"sqlite:///{file}"


def _database(uri: str) -> str:
    import sqlalchemy as sa  # only for database URIs: validate stays fast

    shown = mask(uri)
    try:
        engine = sa.create_engine(uri)
    except (ImportError, sa.exc.NoSuchModuleError, sa.exc.ArgumentError, ValueError) as e:
        hint = " (pip install 'peftsearch[postgres]')" if uri.startswith("postgresql") else ""
        raise ValueError(f"cannot use this database driver{hint}: {redact(str(e).splitlines()[0])}, got {shown!r}") from None
    try:
        with engine.connect():
            pass
    except sa.exc.SQLAlchemyError as e:
        first = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise ValueError(f"cannot connect to the database: {redact(first)}, got {shown!r}") from None
    finally:
        engine.dispose()
    return uri


def _server(uri: str, parts: urllib.parse.SplitResult) -> str:
    shown = mask(uri)
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as r:
            if r.status != 200:
                raise ValueError(f"the MLflow server's /health answered {r.status}, got {shown!r}")
    except (urllib.error.URLError, OSError, ValueError) as e:
        if isinstance(e, ValueError) and str(e).startswith("the MLflow"):
            raise
        raise ValueError(f"cannot reach the MLflow server: {redact(str(getattr(e, 'reason', e)))}, got {shown!r}") from None
    try:
        _server_credentials(uri)
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            raise ValueError(f"the MLflow server refused the credentials in MLFLOW_TRACKING_USERNAME/PASSWORD "
                             f"({e.code}); set them to an account of that server, got {shown!r}") from None
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
