"""Alembic glue: apply migrations, and tell whether a database is at head (for ``/readyz``)."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, DateTime
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import TypeDecorator, TypeEngine

from portal.db.types import MYSQL_DIALECTS
from portal.paths import MIGRATIONS_DIR

__all__ = [
    "MARIADB_COLLATION",
    "MYSQL_COLLATION",
    "alembic_config",
    "compare_type",
    "current_revisions",
    "head_revisions",
    "mysql_collation",
    "prepare_database",
    "upgrade",
]

MARIADB_COLLATION = "utf8mb4_nopad_bin"
MYSQL_COLLATION = "utf8mb4_0900_bin"
"""Strings compare and sort by code point on MariaDB/MySQL, as on PostgreSQL with the C collation: the
server's default (``utf8mb4_general_ci`` on MariaDB) would make ``Team-A`` and ``team-a``, or ``e`` and
``é``, the same slug, email or name; a PAD SPACE collation (``utf8mb4_bin``) would make ``a`` and
``a `` the same."""


def mysql_collation(dialect: Dialect) -> str:
    """The collation portal's tables use on this MariaDB or MySQL server."""
    return MARIADB_COLLATION if getattr(dialect, "is_mariadb", False) else MYSQL_COLLATION


def prepare_database(connection: Connection) -> None:
    """Before migrating: on MariaDB/MySQL make utf8mb4 with :func:`mysql_collation` the database's
    default, so every table a migration creates (``alembic_version`` included) gets it."""
    if connection.dialect.name in MYSQL_DIALECTS:
        collation = mysql_collation(connection.dialect)
        connection.exec_driver_sql(f"ALTER DATABASE CHARACTER SET utf8mb4 COLLATE {collation}")


def _sqlite_affinity(declared: str) -> str:
    """SQLite's type affinity for a declared column type (https://sqlite.org/datatype3.html 3.1)."""
    name = declared.upper()
    if "INT" in name:
        return "INTEGER"
    if any(word in name for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in name or not name:
        return "BLOB"
    if any(word in name for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def compare_type(
    context: MigrationContext,
    inspected_column: Column[Any],
    metadata_column: Column[Any],
    inspected_type: TypeEngine[Any],
    metadata_type: TypeEngine[Any],
) -> bool | None:
    """Alembic ``compare_type`` hook: compare portable types by what the database really stores.

    SQLite reflects any declared type by its affinity, so a column is unchanged when both affinities
    agree. On MariaDB/MySQL a ``DATETIME``'s fractional digits count too (Alembic ignores them, and a
    bare ``DATETIME`` silently drops microseconds). Elsewhere Alembic's own comparison is used.
    """
    dialect = context.dialect
    impl = metadata_type.dialect_impl(dialect)
    if isinstance(impl, TypeDecorator):
        impl = impl.load_dialect_impl(dialect)
    if dialect.name in MYSQL_DIALECTS:
        if isinstance(impl, DateTime) and isinstance(inspected_type, DateTime):
            return getattr(impl, "fsp", None) != getattr(inspected_type, "fsp", None)
        return None
    if dialect.name != "sqlite":
        return None
    declared = impl.compile(dialect=dialect)
    return _sqlite_affinity(declared) != _sqlite_affinity(inspected_type.compile(dialect=dialect))


def alembic_config(database_url: str) -> Config:
    """An Alembic config for ``migrations/`` and the given (async) database URL."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (blocking; runs its own event loop inside env.py)."""
    command.upgrade(alembic_config(database_url), revision)


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    """:func:`upgrade` from async code, in a worker thread."""
    await asyncio.to_thread(upgrade, database_url, revision)


def head_revisions() -> set[str]:
    """The head revision ids of ``migrations/``."""
    return set(ScriptDirectory(str(MIGRATIONS_DIR)).get_heads())


def _current(connection: Connection) -> set[str]:
    return set(MigrationContext.configure(connection).get_current_heads())


async def current_revisions(engine: AsyncEngine) -> set[str]:
    """The revision ids the database is at."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)
