"""A live portal for the end-to-end browser flow: sign-in through the real OIDC provider (npm
``oidc-provider``; ``alice`` is an admin through the ``portal-admins`` group), the offline ``mock``
models, and a tenant (``flow.other_slug``) that the flow's member must never see. ``carol`` (no
groups) is provisioned beforehand, as an operator would with ``portal users create``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import msgspec
import pytest
from playwright.async_api import Browser
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal import audit
from portal.app import create_app
from portal.db.models import User
from portal.tenants.service import create_tenant
from tests.conftest import free_port, make_settings, redis_url_for
from tests.e2e_support import launch_chromium
from tests.fakes.oidc_fixture import RunningOidcProvider
from tests.proxy.conftest import serve

MEMBER_EMAIL = "carol@example.org"
PRICED = {"input_price_per_mtok": "1000", "output_price_per_mtok": "3000"}  # visible on a chart
MODELS = [{"name": "mock-small", "deployments": [{"provider": "mock", "model": "mock-1", **PRICED}]}]


@dataclass
class Flow:
    url: str
    idp: RunningOidcProvider
    sessions: async_sessionmaker[AsyncSession]
    other_slug: str


@pytest.fixture(scope="session")
async def flow(
    backend: str,
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    oidc_provider: RunningOidcProvider,
) -> AsyncIterator[Flow]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    oidc_provider.allow(
        oidc_provider.client.client_id,
        redirect_uris=(f"{url}/auth/oidc/test/callback",),
        post_logout_redirect_uris=(f"{url}/login",),
    )
    async with sessions() as session, session.begin():
        other = await create_tenant(session, audit.Actor(type="test"), slug=f"hidden-{uuid.uuid4().hex[:6]}")
        if await session.scalar(select(User.id).where(User.email == MEMBER_EMAIL)) is None:
            session.add(User(email=MEMBER_EMAIL, display_name="Carol Nogroup", role="none"))
    settings = make_settings(
        database_url,
        models=MODELS,
        redis_url=redis_url_for(backend),
        secure_cookies=False,
        oidc_providers=[msgspec.to_builtins(oidc_provider.provider_config())],
        group_mappings=[{"group": "portal-admins", "role": "admin"}],
    )
    app = create_app(settings)
    served_url, server, task = await serve(app, port=port)
    assert served_url == url
    try:
        yield Flow(url, oidc_provider, sessions, other.slug)
    finally:
        server.should_exit = True
        await task


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Browser]:
    async with launch_chromium() as browser:
        yield browser
