"""Shared fixtures: a migrated database per backend (a SQLite file, and a fresh real PostgreSQL and
MariaDB database), an engine and session factory on it, settings and an app client.

Every test that uses ``database_url`` (directly or through ``sessions``/``client``) runs once per
backend. PostgreSQL and MariaDB are required, not optional: if one is down the suite fails, it never
skips. A module marked ``@pytest.mark.backends("sqlite", "postgresql")`` runs on those backends only
(its other backends' items are deselected, and the run's summary counts them); only the slow browser
modules use it.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncmy  # type: ignore[import-untyped]
import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from portal.config import Settings, load_settings
from portal.db.engine import create_engine, create_session_factory
from portal.db.migrate import upgrade

pytest_plugins = ["tests.fakes.fixtures", "tests.fakes.oidc_fixture", "tests.fakes.ldap_fixture"]

POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TEST_SECRET = "test-secret-key-0123456789-abcdefghijklmnop"
MARIADB_ADMIN_URL = os.environ.get("TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306/test")
BACKENDS = ["sqlite", "postgresql", "mariadb"]
SERVER_BACKENDS = frozenset({"postgresql", "mariadb"})
browser_backends = pytest.mark.backends("sqlite", "postgresql")
"""For tests that drive Chromium: they check the pages' behaviour, which does not depend on the
database, and cost seconds each; the HTTP tests of the same pages run on MariaDB too."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def create_postgres_database() -> str:
    """Create a uniquely named PostgreSQL database; return its async URL."""
    name = f"portal_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}"


async def drop_postgres_database(url: str) -> None:
    """Drop the database behind ``url`` (terminating leftover connections)."""
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def mariadb_execute(statement: str) -> None:
    """Run one statement on the MariaDB server as the admin user."""
    admin = make_url(MARIADB_ADMIN_URL)
    conn = await asyncmy.connect(
        host=admin.host or "127.0.0.1",
        port=admin.port or 3306,
        user=admin.username or "root",
        password=admin.password or "",
    )
    try:
        async with conn.cursor() as cursor:
            await cursor.execute(statement)
    finally:
        conn.close()


async def create_mariadb_database() -> str:
    """Create a uniquely named MariaDB database (server defaults: `portal migrate` sets its collation)."""
    name = f"portal_test_{uuid.uuid4().hex[:12]}"
    await mariadb_execute(f"CREATE DATABASE `{name}`")
    url = make_url(MARIADB_ADMIN_URL).set(drivername="mysql+asyncmy", database=name)
    return url.render_as_string(hide_password=False)


async def drop_mariadb_database(url: str) -> None:
    """Drop the MariaDB database behind ``url``."""
    name = make_url(url).database
    await mariadb_execute(f"DROP DATABASE IF EXISTS `{name}`")


async def new_database(backend: str, tmp: Path) -> str:
    """A fresh, empty database of ``backend``; returns its async URL."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp / f'portal-{uuid.uuid4().hex[:8]}.db'}"
    if backend == "mariadb":
        return await create_mariadb_database()
    return await create_postgres_database()


async def dispose_database(url: str) -> None:
    """Drop a database made by :func:`new_database` (a SQLite file goes with its temporary folder)."""
    if url.startswith("postgresql"):
        await drop_postgres_database(url)
    elif url.startswith("mysql"):
        await drop_mariadb_database(url)


def redis_url_for(backend: str) -> str | None:
    """Redis for the server databases (many instances run that way), none (memory) for SQLite."""
    return REDIS_URL if backend in SERVER_BACKENDS else None


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend of this run of the test: ``sqlite``, ``postgresql`` or ``mariadb``."""
    return str(request.param)


@pytest.fixture(scope="session")
async def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A database of ``backend``, migrated to head, shared by the session's tests of that backend."""
    url = await new_database(backend, tmp_path_factory.mktemp(backend))
    try:
        await upgrade_database(url)
        yield url
    finally:
        await dispose_database(url)


async def upgrade_database(url: str) -> None:
    """Migrate the database behind ``url`` to head (Alembic runs in a worker thread)."""
    import asyncio

    await asyncio.to_thread(upgrade, url)


def make_settings(database_url: str, **overrides: object) -> Settings:
    """Settings for tests: the given database, a fixed secret, no YAML file, no environment."""
    env = {"PORTAL_DATABASE_URL": database_url, "PORTAL_SECRET_KEY": TEST_SECRET}
    return load_settings(env, **overrides)


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(settings)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_session_factory(engine)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    """An HTTP client for a fresh app on the session database (lifespan run)."""
    from portal.app import create_app

    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def clean_env() -> Iterator[None]:
    """No PORTAL_* variable during the test; the environment is restored afterwards, whatever the
    test (or a command it runs in-process, like ``portal demo``) changed."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith("PORTAL_"):
            del os.environ[name]
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the items of a ``backends``-marked test whose ``backend`` is not one of the marker's."""
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        marker = item.get_closest_marker("backends")
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("backend") if callspec is not None else None
        if marker is not None and backend is not None and backend not in marker.args:
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
