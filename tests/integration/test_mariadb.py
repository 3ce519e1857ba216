"""MariaDB only: what ``portal migrate`` and the engine set up there, and that the models-vs-migrations
check sees MariaDB-specific drift (the test in test_migrations.py relies on it).

The same behaviour on every backend is tested in test_dialects.py; this module checks the MariaDB
mechanisms behind it: the database's collation, each session's settings, the type comparison.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import JSON, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import portal.db.models  # noqa: F401
from portal.config import Settings
from portal.db.base import Base
from portal.db.engine import create_engine
from portal.db.migrate import MARIADB_COLLATION
from tests.conftest import dispose_database, mariadb_execute, new_database, upgrade_database
from tests.integration.test_migrations import _diff

pytestmark = pytest.mark.backends("mariadb")


async def _rows(engine: AsyncEngine, sql: str) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql))).all())


async def test_every_table_and_text_column_compares_by_code_point(engine: AsyncEngine, backend: str) -> None:
    """The test database is created with the server's default collation; migrating changed it."""
    [(default,)] = await _rows(engine, "SELECT @@collation_database")
    tables = await _rows(
        engine,
        "SELECT table_name, table_collation FROM information_schema.tables WHERE table_schema = DATABASE()",
    )
    columns = await _rows(
        engine,
        "SELECT table_name, column_name, collation_name FROM information_schema.columns "
        "WHERE table_schema = DATABASE() AND collation_name IS NOT NULL",
    )
    assert default == MARIADB_COLLATION
    assert {name for name, _ in tables} >= {"alembic_version", "tenants", "users"}
    assert [t for t in tables if t[1] != MARIADB_COLLATION] == []
    json_columns = {
        (table.name, column.name)
        for table in Base.metadata.tables.values()
        for column in table.columns
        if isinstance(column.type, JSON)
    }
    others = {(table, column) for table, column, collation in columns if collation != MARIADB_COLLATION}
    assert others == json_columns  # MariaDB's JSON is a LONGTEXT that always compares as utf8mb4_bin


async def test_sessions_are_utc_strict_and_utf8mb4(engine: AsyncEngine) -> None:
    [(zone, mode, charset)] = await _rows(
        engine, "SELECT @@session.time_zone, @@session.sql_mode, @@character_set_client"
    )
    assert zone == "+00:00"
    assert {"STRICT_TRANS_TABLES", "STRICT_ALL_TABLES", "NO_ZERO_DATE"} <= set(mode.split(","))
    assert charset == "utf8mb4"


async def test_a_connection_the_server_dropped_is_replaced(settings: Settings) -> None:
    """MariaDB closes connections idle past ``wait_timeout`` (or on a restart); the pool checks each
    connection before use and opens a new one instead of failing the request."""
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            first = await conn.scalar(text("SELECT CONNECTION_ID()"))
        await mariadb_execute(f"KILL {int(first)}")
        async with engine.connect() as conn:
            second = await conn.scalar(text("SELECT CONNECTION_ID()"))
        assert second != first
    finally:
        await engine.dispose()


async def test_model_comparison_sees_mariadb_type_drift(backend: str, tmp_path: Any) -> None:
    """A column left as a bare DATETIME (no microseconds), FLOAT, BLOB, VARCHAR instead of TEXT, or
    TEXT instead of JSON is a difference, so a migration written with the wrong type fails the test."""
    url = await new_database(backend, tmp_path)
    engine = create_async_engine(url)
    try:
        await upgrade_database(url)
        async with engine.begin() as conn:
            for statement in (
                "ALTER TABLE audit_events MODIFY created_at DATETIME NOT NULL",
                "ALTER TABLE budgets MODIFY soft_threshold FLOAT",
                "ALTER TABLE credentials MODIFY ciphertext BLOB NOT NULL",
                "ALTER TABLE request_logs MODIFY prompt VARCHAR(10000)",
                "ALTER TABLE tenants MODIFY metadata TEXT NOT NULL",
            ):
                await conn.exec_driver_sql(statement)
        async with engine.connect() as conn:
            differences = await conn.run_sync(_diff)
    finally:
        await engine.dispose()
        await dispose_database(url)
    changed = {(d[0][2], d[0][3]) for d in differences if isinstance(d, list) and d[0][0] == "modify_type"}
    assert changed == {
        ("audit_events", "created_at"),
        ("budgets", "soft_threshold"),
        ("credentials", "ciphertext"),
        ("request_logs", "prompt"),
        ("tenants", "metadata"),
    }
