"""Engine and session factory for the configured database (SQLite, PostgreSQL or MariaDB/MySQL).

Each backend gets the session settings the code relies on:

- SQLite: WAL mode, foreign keys, a busy timeout.
- MariaDB/MySQL: ``READ COMMITTED`` like PostgreSQL (InnoDB's default ``REPEATABLE READ`` reads a
  snapshot taken at a transaction's first read, and takes gap locks that deadlock concurrent inserts);
  utf8mb4; the session time zone UTC (``DATETIME`` columns hold naive UTC); strict SQL mode, so a value
  that does not fit (money, a long string) is an error rather than silently truncated; connections
  recycled before the server's ``wait_timeout`` closes them, and checked before use.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from portal.config import Settings
from portal.db.types import MYSQL_DIALECTS

__all__ = [
    "MYSQL_SESSION_SQL",
    "create_engine",
    "create_migration_engine",
    "create_session_factory",
    "dialect_engine_options",
]

MYSQL_SESSION_SQL = "SET SESSION time_zone = '+00:00', sql_mode = 'TRADITIONAL,NO_ENGINE_SUBSTITUTION'"
"""Run on every new MariaDB/MySQL connection."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _mysql_session(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(MYSQL_SESSION_SQL)
    cursor.close()


def dialect_engine_options(database_url: str) -> dict[str, Any]:
    """Engine keyword arguments a dialect needs whatever the pool (``charset``, isolation level)."""
    if make_url(database_url).get_backend_name() in MYSQL_DIALECTS:
        return {"isolation_level": "READ COMMITTED", "connect_args": {"charset": "utf8mb4"}}
    return {}


def _listen_on_connect(engine: AsyncEngine) -> AsyncEngine:
    backend = engine.dialect.name
    if backend == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    elif backend in MYSQL_DIALECTS:
        event.listen(engine.sync_engine, "connect", _mysql_session)
    return engine


def create_engine(settings: Settings, *, url: str | None = None) -> AsyncEngine:
    """Create the async engine with the backend's session settings (see the module docstring)."""
    database_url = url or settings.async_database_url
    kwargs: dict[str, Any] = {"pool_pre_ping": True, **dialect_engine_options(database_url)}
    if database_url.startswith("sqlite"):
        if ":memory:" in database_url or database_url.endswith("://"):
            kwargs = {"poolclass": NullPool}
    else:
        kwargs.update(pool_size=settings.db_pool_size, max_overflow=settings.db_pool_size, pool_recycle=1800)
    return _listen_on_connect(create_async_engine(database_url, **kwargs))


def create_migration_engine(database_url: str) -> AsyncEngine:
    """A pool-less engine for Alembic: MariaDB/MySQL session settings, and none of SQLite's pragmas
    (foreign keys on would cascade deletes through batch migrations' table copies)."""
    engine = create_async_engine(database_url, poolclass=NullPool, **dialect_engine_options(database_url))
    if engine.dialect.name in MYSQL_DIALECTS:
        event.listen(engine.sync_engine, "connect", _mysql_session)
    return engine


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)
