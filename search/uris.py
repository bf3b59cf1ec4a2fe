"""Is a tracking URI usable? Checked at spec validation, without writing anything. And: a
password in a URI never leaves the spec (``mask``, ``redact``)."""
from __future__ import annotations

import math
import os
import re
import urllib.error
import urllib.parse
import urllib.request

from search.paths import checked_path, probe, writable_dir

SCHEMES = "sqlite:///PATH, postgresql://..., mysql://..., http(s)://MLFLOW_SERVER"
MASK = "***"
_SQLITE_HEADER = b"SQLite format 3\x00"
# scheme://user:PASSWORD@host in a line of text: the password is whatever lies between the user's
# ':' and the last '@' before the next whitespace (quotes included: repr() puts a password with a
# ' in double quotes)
_SECRET = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@'\"]*:)(?P<secret>[^\s]*)(?P<at>@)")
# ... and in one URI: up to its last '@', whatever the password holds (a space, a '/')
_URI_SECRET = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/:@\s]*:)(?P<secret>.*)(?P<at>@)", re.S)
# ?password=... (libpq and MySQL drivers take one in the query string)
_QUERY_SECRET = re.compile(r"(?P<head>[?&](?:password|passwd|pwd)=)(?P<secret>[^&\s'\"]*)", re.I)
_SECRETS: set[str] = set()  # passwords of URIs checked in this process, also masked where they appear bare
_MIN_BARE = 3  # a shorter password is not searched for bare (it would mask ordinary words)


def mask(uri: str) -> str:
    """The URI with its password, if any, replaced by ***."""
    return redact(_URI_SECRET.sub(lambda m: m["head"] + MASK + m["at"], uri))


def redact(text: str) -> str:
    """Every URI password in a line of text replaced by *** (for anything we print or store): in
    URIs, in ?password= query strings, and bare, as a driver's message may quote it (decoded)."""
    text = _SECRET.sub(lambda m: m["head"] + MASK + m["at"], text)
    text = _QUERY_SECRET.sub(lambda m: m["head"] + MASK, text)
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def remember_secrets(uri: str) -> None:
    """The URI's password, as written and URL-decoded, masked bare from now on in this process."""
    found = [m["secret"] for m in [_URI_SECRET.match(uri)] if m] + [m["secret"] for m in _QUERY_SECRET.finditer(uri)]
    for secret in found:
        for form in {secret, urllib.parse.unquote(secret), urllib.parse.unquote_plus(secret)}:
            if len(form) >= _MIN_BARE and form != MASK:
                _SECRETS.add(form)


def has_secret(uri: str) -> bool:
    return mask(uri) != uri


def check_tracking_uri(uri: str, *, existing: bool = False) -> str:
    """Return the URI with a relative SQLite path made absolute (trials run in other
    directories), or raise ValueError naming the rule that the URI breaks (password masked).
    ``existing``: the analysis reads a store a search has written, so a SQLite file must exist and
    a database must hold MLflow's tables."""
    remember_secrets(uri)
    shown = mask(uri)
    if any(c.isspace() or not c.isprintable() for c in uri):
        raise ValueError(f"must not contain spaces or control characters (URL-encode them: %20 for a space), "
                         f"got {shown!r}")
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
    authority = re.split(r"[/?#]", uri.split("://", 1)[1], maxsplit=1)[0] if "://" in uri else ""
    if authority.count("@") > 1:
        raise ValueError(f"an '@' in the user or password must be URL-encoded as %40, got {shown!r}")
    if scheme == "sqlite":
        return _sqlite(uri, existing=existing)
    if scheme in ("", "file"):
        raise ValueError(f"must be a database or server URI ({SCHEMES}); MLflow refuses file stores, got {shown!r}")
    if scheme not in ("postgresql", "mysql", "mssql", "http", "https"):
        raise ValueError(f"unsupported scheme {scheme!r}; use {SCHEMES}, got {shown!r}")
    if scheme in ("http", "https"):
        return _server(uri, _parse(uri, host=True))
    _parse(uri, host=False)  # a database may be reached without a host: postgresql:///db is a local socket
    return _database(_postgres_driver(uri), existing=existing)


def _postgres_driver(uri: str) -> str:
    """postgresql:// names no driver, and SQLAlchemy >= 2.1 then imports psycopg (3): where only
    psycopg2 is installed (peftsearch[postgres], MLflow's own image) the URI names psycopg2."""
    import importlib.util

    head, sep, rest = uri.partition("://")
    if head.lower() != "postgresql":
        return uri
    import sqlalchemy as sa

    default = sa.dialects.registry.load("postgresql").driver  # psycopg2 before SQLAlchemy 2.1, psycopg from it
    if importlib.util.find_spec(default) is None and importlib.util.find_spec("psycopg2") is not None:
        return f"postgresql+psycopg2{sep}{rest}"
    return uri


def _parse(uri: str, *, host: bool) -> urllib.parse.SplitResult:
    """The URI's parts; its port a number in 1-65535 if it has one, and a host where ``host``.
    (urllib's own messages are not shown: they may quote a password that holds a '/'.)"""
    shown = mask(uri)
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        raise ValueError(f"is not a valid URL (check the brackets of an IPv6 host), got {shown!r}") from None
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"the port must be a number in 1-65535, got {shown!r}")
    if host and not parts.hostname:
        raise ValueError(f"names no host, got {shown!r}")
    return parts


def _sqlite(uri: str, *, existing: bool = False) -> str:
    shown = mask(uri)
    path, _, query = uri.split("://", 1)[1].partition("?")
    query = _sqlite_query(query, shown)
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
    elif existing:
        raise ValueError(f"no such database file (give the tracking.uri a search logged to), got {shown!r}")
    elif probe(file.parent, shown) != "dir":
        raise ValueError(f"the database's directory does not exist, got {shown!r}")
    if existing:
        _mlflow_tables(f"sqlite:///{file}", shown)
    elif kind and not os.access(file, os.W_OK):
        raise ValueError(f"the database is not writable, got {shown!r}")
    elif not kind:  # a new database: its directory takes a file (not /proc, not a read-only mount)
        try:
            writable_dir("", str(file.parent))
        except ValueError:
            raise ValueError(f"the database cannot be created in its directory, got {shown!r}") from None
    return f"sqlite:///{file}" + (f"?{query}" if query else "")


def _sqlite_query(query: str, shown: str) -> str:
    """The one SQLite URI parameter kept: ?timeout=SECONDS, how long a writer waits for the lock
    (SQLAlchemy hands it to sqlite3.connect). Any other would fail there, at the first trial."""
    if not query:
        return ""
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        pairs = [("", query)]
    for key, value in pairs:
        if key != "timeout" or len(pairs) > 1:
            raise ValueError(f"a SQLite URI takes one parameter, ?timeout=SECONDS, got {shown!r}")
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not (0 < seconds < math.inf):
            raise ValueError(f"?timeout= must be a positive number of seconds, got {shown!r}")
    return query


def _mlflow_tables(uri: str, shown: str) -> None:
    """The database holds MLflow's tables (an analysis of anything else has no runs to read)."""
    import sqlalchemy as sa

    engine = sa.create_engine(uri)
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
    except sa.exc.SQLAlchemyError as e:
        first = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise ValueError(f"cannot read the database: {redact(first)}, got {shown!r}") from None
    finally:
        engine.dispose()
    if not {"experiments", "runs"} <= tables:
        raise ValueError(f"is not an MLflow tracking database (no experiments or runs table), got {shown!r}")


def _database(uri: str, *, existing: bool = False) -> str:
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
    if existing:
        _mlflow_tables(uri, shown)
    return uri


def _server(uri: str, parts: urllib.parse.SplitResult) -> str:
    """The server answers /health (and accepts the credentials, if it asks for some). A user and
    password in the URI go in a Basic header, as MLflow's client sends them: urllib would take
    ``user:password@host`` for a host and a port and quote the password in its error."""
    shown = mask(uri)
    try:
        with urllib.request.urlopen(_request(uri, "/health"), timeout=5) as r:
            if r.status != 200:
                raise ValueError(f"the MLflow server's /health answered {r.status}, got {shown!r}")
    except (urllib.error.URLError, OSError, ValueError) as e:
        if isinstance(e, ValueError) and str(e).startswith("the MLflow"):
            raise
        raise ValueError(f"cannot reach the MLflow server: {redact(str(getattr(e, 'reason', e)))}, got {shown!r}") from None
    try:
        _server_credentials(uri, parts)
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            raise ValueError(f"the MLflow server refused the credentials in MLFLOW_TRACKING_USERNAME/PASSWORD "
                             f"({e.code}); set them to an account of that server, got {shown!r}") from None
    return uri


def _request(uri: str, path: str, credentials: tuple[str, str] | None = None) -> urllib.request.Request:
    import base64

    parts = urllib.parse.urlsplit(uri)
    netloc = parts.netloc.rpartition("@")[2]
    req = urllib.request.Request(urllib.parse.urlunsplit(parts._replace(netloc=netloc)).rstrip("/") + path)
    if credentials is None and parts.username is not None:
        credentials = (urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or ""))
    if credentials:
        req.add_header("Authorization", "Basic " + base64.b64encode(":".join(credentials).encode()).decode())
    return req


def _server_credentials(uri: str, parts: urllib.parse.SplitResult) -> None:
    """A server with authentication (MLflow's basic-auth app) answers 401 without the credentials
    that MLflow's client reads from MLFLOW_TRACKING_USERNAME/PASSWORD: check them here, once."""
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    credentials = (user, password) if user and password else None
    urllib.request.urlopen(_request(uri, "/api/2.0/mlflow/experiments/search?max_results=1", credentials),
                           timeout=5).close()


def check_ray_address(address: str) -> str:
    """`run`'s and `resume`'s --address: ``auto`` (the cluster `ray start` made on this machine),
    the head's GCS ``HOST:PORT``, or Ray Client's ``ray://HOST[:PORT]``; checked for its form and
    that something listens there (one TCP connect), or ValueError with one line."""
    import socket

    shown = mask(address)
    if address in ("", "local"):
        raise ValueError(f"--address: leave it out to start a local Ray, got {shown!r}")
    if address.startswith(("http://", "https://")):
        raise ValueError(f"--address: that is a Ray Jobs API (dashboard) address, which `peftsearch submit` takes; "
                         f"run joins a cluster at its GCS address HOST:6379 or ray://HOST:10001, got {shown!r}")
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address_or_die

        try:
            canonicalize_bootstrap_address_or_die("auto")
        except (ConnectionError, ValueError):
            raise ValueError("--address: auto found no Ray cluster on this machine (start one with "
                             "`ray start --head`, or give HOST:PORT), got 'auto'") from None
        return address
    client = address.startswith("ray://")
    rest = address[len("ray://"):] if client else address
    form = ("--address: must be auto, the head's GCS address HOST:PORT (port 6379 by default) or "
            f"ray://HOST[:PORT], got {shown!r}")
    if "://" in rest or any(c.isspace() for c in rest) or re.search(r"[/?#@]", rest):
        raise ValueError(form)
    try:
        parts = urllib.parse.urlsplit(f"//{rest}")
        port = parts.port
    except ValueError:
        raise ValueError(f"--address: the port must be a number in 1-65535, got {shown!r}") from None
    if not parts.hostname or (port is None and not client):
        raise ValueError(form)
    if port == 0:
        raise ValueError(f"--address: the port must be a number in 1-65535, got {shown!r}")
    port = port or 10001
    try:
        socket.create_connection((parts.hostname, port), timeout=5).close()
    except OSError as e:
        raise ValueError(f"--address: nothing answers at {parts.hostname}:{port} "
                         f"({e.strerror or type(e).__name__}), got {shown!r}") from None
    return address
