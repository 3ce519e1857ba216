"""Alembic environment: runs migrations on the async engine for SQLite, PostgreSQL or MariaDB."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

import portal.db.models  # noqa: F401  (registers every table)
from portal.config import normalize_database_url
from portal.db.base import Base
from portal.db.engine import create_migration_engine
from portal.db.migrate import compare_type, prepare_database

config = context.config
if not config.get_main_option("sqlalchemy.url"):
    _fallback = os.environ.get("PORTAL_DATABASE_URL") or "sqlite:///data/portal.db"
    config.set_main_option("sqlalchemy.url", normalize_database_url(_fallback).replace("%", "%%"))
target_metadata = Base.metadata


def _configure(connection: Connection | None = None) -> None:
    url = config.get_main_option("sqlalchemy.url")
    is_sqlite = (
        (url or "").startswith("sqlite") if connection is None else connection.dialect.name == "sqlite"
    )
    context.configure(
        connection=connection,
        url=None if connection is not None else url,
        target_metadata=target_metadata,
        render_as_batch=is_sqlite,
        compare_type=compare_type,
        compare_server_default=False,
        literal_binds=connection is None,
    )


def _run_sync(connection: Connection) -> None:
    prepare_database(connection)
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set"
    engine = create_migration_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    _configure()
    with context.begin_transaction():
        context.run_migrations()
else:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        _run_sync(connectable)
    else:
        asyncio.run(_run_online())
