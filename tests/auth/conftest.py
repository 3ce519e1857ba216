"""A running portal with every sign-in method configured against the real providers: the npm
``oidc-provider`` (provider ``test``), Debian's ``slapd``, and a break-glass account; group mappings
``portal-admins`` -> admin and ``team-eng`` -> tenant admin of ``eng``.

``sso.browser()`` is an httpx client with its own cookie jar (a browser); ``sso.sign_in_local``,
``sso.sign_in_ldap`` and ``sso.sign_in_oidc`` sign that browser in through the real routes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import msgspec
import pytest
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal import audit
from portal.app import create_app
from portal.auth.throttle import LoginThrottle
from portal.tenants.service import create_tenant
from tests.conftest import free_port, make_settings, redis_url_for
from tests.fakes.ldap_fixture import Slapd
from tests.fakes.oidc_fixture import RunningOidcProvider
from tests.proxy.conftest import serve

BREAK_GLASS_ID = "breakglass"
BREAK_GLASS_PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')


@dataclass
class Sso:
    url: str
    app: Litestar
    sessions: async_sessionmaker[AsyncSession]
    idp: RunningOidcProvider
    ldap: Slapd
    eng_tenant_id: uuid.UUID

    def browser(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, trust_env=False, timeout=30, follow_redirects=False)

    async def csrf(self, browser: httpx.AsyncClient) -> str:
        """Open the sign-in page (as a browser would) and read the form's CSRF token."""
        page = await browser.get("/login")
        match = _CSRF.search(page.text)
        assert match is not None, page.text
        return match.group(1)

    async def post_form(
        self, browser: httpx.AsyncClient, path: str, fields: dict[str, str]
    ) -> httpx.Response:
        token = await self.csrf(browser)
        return await browser.post(path, data={"_csrf_token": token, **fields})

    async def sign_in_local(self, browser: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
        return await self.post_form(browser, "/auth/local", {"username": username, "password": password})

    async def sign_in_ldap(self, browser: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
        return await self.post_form(browser, "/auth/ldap", {"username": username, "password": password})

    async def sign_in_oidc(self, browser: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
        """Start at ``/auth/oidc/test/login``, sign in at the provider, follow its redirect back."""
        start = await browser.get("/auth/oidc/test/login")
        assert start.status_code == 303, start.text
        async with httpx.AsyncClient(trust_env=False, timeout=30) as at_provider:
            callback = await self.idp.login(at_provider, start.headers["location"], username, password)
        return await browser.get(callback)


@pytest.fixture(scope="session")
async def sso(
    backend: str,
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    oidc_provider: RunningOidcProvider,
    slapd: Slapd,
) -> AsyncIterator[Sso]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    oidc_provider.allow(
        oidc_provider.client.client_id,
        redirect_uris=(f"{url}/auth/oidc/test/callback",),
        post_logout_redirect_uris=(f"{url}/login",),
    )
    slug = f"eng-{uuid.uuid4().hex[:6]}"
    async with sessions() as session, session.begin():
        eng = await create_tenant(session, audit.Actor(type="test"), slug=slug)
    settings = make_settings(
        database_url,
        redis_url=redis_url_for(backend),
        secure_cookies=False,
        oidc_providers=[msgspec.to_builtins(oidc_provider.provider_config())],
        ldap=msgspec.to_builtins(slapd.search_config()),
        group_mappings=[
            {"group": "portal-admins", "role": "admin"},
            {"group": "team-eng", "tenant": slug, "tenant_role": "tenant_admin"},
        ],
        admin_id=BREAK_GLASS_ID,
        admin_password=BREAK_GLASS_PASSWORD,
        login_max_failures=3,
    )
    app = create_app(settings)
    served_url, server, task = await serve(app, port=port)
    assert served_url == url
    # Failed sign-ins are counted in Redis (PostgreSQL runs), which outlives a test run: give this
    # run's counters their own namespace so earlier runs' failures do not throttle this one.
    app.state.login_throttle = LoginThrottle(
        app.state.resources.redis, settings.login_max_failures, namespace=f"portal:login:{uuid.uuid4().hex}:"
    )
    try:
        yield Sso(url, app, sessions, oidc_provider, slapd, eng.id)
    finally:
        server.should_exit = True
        await task
