"""Migrations create exactly the tables the models declare, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import portal.db.models  # noqa: F401
from portal.db.base import Base
from portal.db.migrate import alembic_config, compare_type, current_revisions, head_revisions
from tests.conftest import dispose_database, new_database


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": compare_type, "target_metadata": Base.metadata}
    )
    return list(compare_metadata(context, Base.metadata))


async def test_models_and_migrations_agree(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        differences = await conn.run_sync(_diff)
    assert differences == []


async def test_database_is_at_head(engine: AsyncEngine) -> None:
    assert await current_revisions(engine) == head_revisions()


async def test_every_model_table_exists(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    assert set(Base.metadata.tables) <= tables


async def test_downgrade_to_base_and_back(backend: str, tmp_path: Path) -> None:
    url = await new_database(backend, tmp_path)
    try:
        cfg = alembic_config(url)
        await asyncio.to_thread(command.upgrade, cfg, "head")
        await asyncio.to_thread(command.downgrade, cfg, "base")
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                left = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            assert left <= {"alembic_version"}
        finally:
            await engine.dispose()
        await asyncio.to_thread(command.upgrade, cfg, "head")
    finally:
        await dispose_database(url)
