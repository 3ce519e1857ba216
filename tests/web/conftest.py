"""The portal pages under test: a live server (real uvicorn) with the offline ``mock`` model, people
of every kind signed in through real sessions, and Chromium for the browser flows.

``ui.browser(kind)`` is an httpx client signed in as ``admin``, ``operator``, ``auditor``,
``tenant_admin``, ``member`` (both of tenant ``ui.tenant``) or ``None`` (signed out); it sends the
CSRF token like htmx does (``ui.form(...)`` posts a form with it). ``ui.page(chromium, kind)`` is a
Playwright page with the same session cookie. ``ui.other_tenant`` belongs to nobody above.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from litestar import Litestar
from litestar.testing import RequestFactory
from playwright.async_api import Browser, BrowserContext, Page
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal import audit
from portal.app import create_app
from portal.auth.sessions import COOKIE_NAME, SessionManager
from portal.db.models import Membership, SubjectType, User
from portal.grants.service import add_grant
from portal.tenants.service import create_tenant
from tests.conftest import make_settings, redis_url_for
from tests.e2e_support import DEFAULT_TIMEOUT_MS, launch_chromium
from tests.proxy.conftest import serve

MODELS = [
    {"name": "mock-small", "deployments": [{"provider": "mock", "model": "mock-1"}]},
    {"name": "mock-large", "deployments": [{"provider": "mock", "model": "mock-2"}]},
]
KINDS = {
    "admin": ("admin", None),
    "operator": ("operator", None),
    "auditor": ("auditor", None),
    "tenant_admin": ("none", "tenant_admin"),
    "member": ("none", "member"),
}
_CSRF = re.compile(r'"X-CSRFToken": "([^"]+)"')


@dataclass
class Ui:
    url: str
    app: Litestar
    sessions: async_sessionmaker[AsyncSession]
    tenant: uuid.UUID
    tenant_slug: str
    other_tenant: uuid.UUID
    other_slug: str
    users: dict[str, uuid.UUID] = field(default_factory=dict)

    async def session_cookie(self, kind: str) -> str:
        """A fresh session for the person of ``kind``."""
        manager: SessionManager = self.app.state.session_manager
        cookie = await manager.start(RequestFactory(app=self.app).get("/"), self.users[kind])
        return str(cookie.value)

    @asynccontextmanager
    async def browser(self, kind: str | None) -> AsyncIterator[httpx.AsyncClient]:
        """An httpx "browser" signed in as ``kind``, sending the CSRF token in the htmx header."""
        async with httpx.AsyncClient(
            base_url=self.url, trust_env=False, timeout=30, follow_redirects=False
        ) as client:
            if kind is not None:
                client.cookies.set(COOKIE_NAME, await self.session_cookie(kind))
            page = await client.get("/account" if kind is not None else "/login")
            match = _CSRF.search(page.text)
            assert match is not None
            client.headers["X-CSRFToken"] = match.group(1)
            yield client

    async def page(self, chromium: Browser, kind: str | None) -> tuple[BrowserContext, Page]:
        context = await chromium.new_context(base_url=self.url)
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        if kind is not None:
            value = await self.session_cookie(kind)
            await context.add_cookies([{"name": COOKIE_NAME, "value": value, "url": self.url}])
        return context, await context.new_page()


@pytest.fixture(scope="session")
async def ui(
    backend: str, database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Ui]:
    actor = audit.Actor(type="test", label="ui tests")
    async with sessions() as session, session.begin():
        tenant = await create_tenant(session, actor, slug=f"ui-{uuid.uuid4().hex[:6]}", name="UI Team")
        other = await create_tenant(session, actor, slug=f"other-{uuid.uuid4().hex[:6]}", name="Other Team")
        for row in (tenant, other):
            await add_grant(session, actor, subject_type=SubjectType.TENANT, subject_id=row.id)
        users: dict[str, uuid.UUID] = {}
        for kind, (role, membership) in KINDS.items():
            user = User(
                email=f"{kind}-{uuid.uuid4().hex[:6]}@example.org", display_name=f"UI {kind}", role=role
            )
            session.add(user)
            await session.flush()
            users[kind] = user.id
            if membership:
                session.add(Membership(user_id=user.id, tenant_id=tenant.id, role=membership))
    settings = make_settings(
        database_url,
        models=MODELS,
        secure_cookies=False,
        redis_url=redis_url_for(backend),
    )
    app = create_app(settings)
    url, server, task = await serve(app)
    try:
        yield Ui(url, app, sessions, tenant.id, tenant.slug, other.id, other.slug, users)
    finally:
        server.should_exit = True
        await task


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Browser]:
    async with launch_chromium() as browser:
        yield browser
