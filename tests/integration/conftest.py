"""Fixtures of the integration tests: a fresh migrated database per test, for tests that tamper with
or delete rows (the audit chain, retention) and so must not share the session database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from portal.db.engine import create_engine, create_session_factory
from portal.db.migrate import upgrade_async
from tests.conftest import dispose_database, make_settings, new_database


@dataclass
class FreshDb:
    """A database of its own: its URL, engine and session factory."""

    url: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]


@pytest.fixture
async def fresh(backend: str, tmp_path: Path) -> AsyncIterator[FreshDb]:
    """A new migrated database of ``backend`` for one test, dropped afterwards."""
    url = await new_database(backend, tmp_path)
    await upgrade_async(url)
    engine = create_engine(make_settings(url))
    try:
        yield FreshDb(url, engine, create_session_factory(engine))
    finally:
        await engine.dispose()
        await dispose_database(url)
