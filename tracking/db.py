"""All reads of the tracking database go through one engine and one session helper (the shape
of optuna.storages._rdb). MLflow's schema: experiments, runs, params, tags, metrics,
latest_metrics."""
from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def is_database_uri(uri: str) -> bool:
    return uri.split(":", 1)[0].split("+", 1)[0] in DB_SCHEMES


@lru_cache(maxsize=8)
def engine(uri: str) -> sa.Engine:
    if not is_database_uri(uri):
        raise ValueError(
            f"tracking-uri: must be a database URI ({', '.join(s + '://' for s in DB_SCHEMES)}) "
            f"because the analysis reads MLflow's tables directly (got {uri!r})"
        )
    eng = sa.create_engine(uri)
    if uri.startswith("sqlite"):
        sa.event.listen(eng, "connect", _sqlite_pragmas)
    return eng


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    """SQLite's default page cache is 2 MB: a 100k-run database's tag index then spills on every
    lookup. A 256 MB cache and memory-mapped reads make the analysis query several times faster."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA cache_size = -262144")
    cur.execute("PRAGMA mmap_size = 1073741824")
    cur.close()


@contextmanager
def session_scope(uri: str) -> Iterator[Session]:
    """A session that commits on success, rolls back on error, and always closes."""
    session = sessionmaker(bind=engine(uri))()
    try:
        yield session
        session.commit()
    except Exception:
        session.rollback()
        raise
    finally:
        session.close()
