"""The admin API under test: the real app served by uvicorn on 127.0.0.1 (one per backend and test
session), an admin key of every role, and a client per role.

``api.client(role)`` is an httpx client carrying that role's key; ``api.master`` carries the master
key. Tenant-admin keys belong to the tenant ``api.tenant_id``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal import audit
from portal.app import create_app
from portal.config import Settings
from portal.db.models import TENANT_SCOPED_ROLES, AdminRole
from portal.keys.service import create_key
from portal.proxy.gateway import Gateway
from portal.tenants.service import create_tenant
from tests.conftest import make_settings, redis_url_for
from tests.proxy.conftest import serve

ACTOR = audit.Actor(type="test", label="api tests")
MASTER_KEY = "sk-test-master-key-0123456789"


@dataclass
class AdminApi:
    """A running app and admin keys for every role."""

    url: str
    app: Litestar
    sessions: async_sessionmaker[AsyncSession]
    keys: dict[str, str] = field(default_factory=dict)
    tenant_id: uuid.UUID | None = None
    tenant_slug: str = ""

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.app.state.gateway
        return gateway

    def client(self, role: str | None = "admin", key: str | None = None) -> httpx.AsyncClient:
        """A client authenticated as ``role`` (``master`` for the master key, ``None`` for no key)."""
        secret = key if key is not None else (MASTER_KEY if role == "master" else self.keys.get(role or ""))
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, trust_env=False, timeout=30)


@pytest.fixture(scope="session")
async def admin_api(
    backend: str, database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[AdminApi]:
    settings = make_settings(
        database_url,
        master_key=MASTER_KEY,
        redis_url=redis_url_for(backend),
    )
    async with running_admin_api(settings, sessions, "home") as api:
        yield api


@asynccontextmanager
async def running_admin_api(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], prefix: str
) -> AsyncIterator[AdminApi]:
    """Serve an app for ``settings`` with a tenant ``<prefix>-...`` and an admin key of every role."""
    app = create_app(settings)
    url, server, task = await serve(app)
    api = AdminApi(url=url, app=app, sessions=sessions)
    async with sessions() as session, session.begin():
        tenant = await create_tenant(session, ACTOR, slug=f"{prefix}-{uuid.uuid4().hex[:8]}")
        api.tenant_id, api.tenant_slug = tenant.id, tenant.slug
        for role in AdminRole:
            new = await create_key(
                session,
                ACTOR,
                role=role,
                alias=f"{prefix} {role} key",
                tenant_id=tenant.id if role in TENANT_SCOPED_ROLES else None,
            )
            api.keys[role.value] = new.secret
    try:
        yield api
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def admin(admin_api: AdminApi) -> AsyncIterator[httpx.AsyncClient]:
    """A client with the ``admin`` role."""
    async with admin_api.client("admin") as client:
        yield client
