"""The ``portal`` command: seed-key stores only a hash, migrate, config check, and demo seeding."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.cli import main
from portal.db.models import ApiKey, AuditEvent, Deployment, Grant, Model, Tenant
from portal.demo import DEMO_KEY
from tests.conftest import TEST_SECRET, dispose_database, new_database


def run(database_url: str, *args: str, **env: str) -> tuple[int, str, str]:
    runner = CliRunner()
    result = runner.invoke(
        main, list(args), env={"PORTAL_DATABASE_URL": database_url, "PORTAL_SECRET_KEY": TEST_SECRET, **env}
    )
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.usefixtures("clean_env")
async def test_seed_key_prints_a_key_stored_only_as_hash(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    code, out, err = await asyncio.to_thread(run, database_url, "seed-key", "--alias", "ops-seed")
    assert code == 0, err
    key = out.strip()
    assert key.startswith("sk-admin-")
    assert "not shown again" in err
    async with sessions() as session:
        row = await session.scalar(select(ApiKey).where(ApiKey.alias == "ops-seed"))
        assert row is not None
        assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
        assert row.role == "admin"
        assert key not in row.key_prefix
        for column in ApiKey.__table__.columns:
            assert getattr(row, column.key, None) != key
        events = await session.scalar(select(func.count()).where(AuditEvent.target_id == str(row.id)))
        assert events == 1


@pytest.mark.usefixtures("clean_env")
def test_seed_key_with_a_supplied_value_and_duplicate(database_url: str) -> None:
    code, out, _ = run(database_url, "seed-key", "--key", "sk-my-chosen-admin-key", "--role", "viewer")
    assert code == 0
    assert out.strip() == "sk-my-chosen-admin-key"
    code, _, err = run(database_url, "seed-key", "--key", "sk-my-chosen-admin-key")
    assert code == 1
    assert "already exists" in err


@pytest.mark.usefixtures("clean_env")
def test_invalid_configuration_exits_2_with_the_reason(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["migrate"], env={"PORTAL_DATABASE_URL": "nonsense", "PORTAL_SECRET_KEY": ""}
    )
    assert result.exit_code == 2
    assert "PORTAL_DATABASE_URL" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.usefixtures("clean_env")
async def test_migrate_then_demo_is_idempotent(backend: str, tmp_path: Path) -> None:
    url = await new_database(backend, tmp_path)
    try:
        code, out, err = await asyncio.to_thread(run, url, "migrate")
        assert code == 0, err
        assert "latest schema" in out
        for _ in range(2):
            code, out, err = await asyncio.to_thread(
                run, url, "demo", "--no-serve", "--data-dir", str(tmp_path / "data")
            )
            assert code == 0, err
            assert DEMO_KEY in out
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                counts = [
                    await conn.scalar(select(func.count()).select_from(table))
                    for table in (Tenant, Model, Deployment, Grant, ApiKey)
                ]
                provider = await conn.scalar(select(Deployment.provider))
        finally:
            await engine.dispose()
        assert counts == [1, 1, 1, 1, 1]
        assert provider == "mock"
    finally:
        await dispose_database(url)


@pytest.mark.usefixtures("clean_env")
def test_config_check_redacts_secrets(database_url: str) -> None:
    code, out, _ = run(
        database_url,
        "config",
        "check",
        PORTAL_MASTER_KEY="sk-master-very-secret-value",
        PORTAL_METRICS_TOKEN="metrics-token-very-secret",
    )
    assert code == 0
    assert "sk-master-very-secret-value" not in out
    assert "metrics-token-very-secret" not in out
    assert TEST_SECRET not in out
    assert '"master_key": "<redacted>"' in out
    assert '"metrics_token": "<redacted>"' in out
