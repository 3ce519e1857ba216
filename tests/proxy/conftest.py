"""A running gateway for proxy tests: the real app under uvicorn on 127.0.0.1, in the test event loop,
with models on every fake upstream, and helpers to create tenants, keys and grants."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
import uvicorn
from litestar import Litestar
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal import audit
from portal.app import FastPath, create_app
from portal.db.models import ApiKey, BudgetKind, RequestLog, SubjectType
from portal.grants.service import add_grant
from portal.keys.service import create_key
from portal.limits.budgets import set_budget
from portal.proxy.gateway import Gateway
from portal.tenants.service import create_tenant
from tests.conftest import free_port, make_settings, redis_url_for
from tests.fakes.server import FakeUpstream

ACTOR = audit.Actor(type="test", label="proxy tests")
BEDROCK_KEY_ENV = "TEST_BEDROCK_CREDENTIALS"


def model_list(
    openai: FakeUpstream, anthropic: FakeUpstream, gemini: FakeUpstream, bedrock: FakeUpstream
) -> list[dict[str, Any]]:
    os.environ["TEST_OPENAI_KEY"] = openai.api_key
    os.environ["TEST_ANTHROPIC_KEY"] = anthropic.api_key
    os.environ["TEST_GEMINI_KEY"] = gemini.api_key
    os.environ[BEDROCK_KEY_ENV] = bedrock.api_key

    def dep(
        provider: str, model: str, api_base: str, key_env: str, inp: str, out: str, **kw: Any
    ) -> dict[str, Any]:
        return {
            "provider": provider,
            "model": model,
            "api_base": api_base,
            "api_key": f"env:{key_env}",
            "input_price_per_mtok": inp,
            "output_price_per_mtok": out,
            **kw,
        }

    return [
        {
            "name": "gpt-4o-mini",
            "deployments": [
                dep("openai", "gpt-4o-mini", f"{openai.base_url}/v1", "TEST_OPENAI_KEY", "0.15", "0.60")
            ],
        },
        {
            "name": "text-embedding-3-small",
            "mode": "embedding",
            "deployments": [
                dep(
                    "openai",
                    "text-embedding-3-small",
                    f"{openai.base_url}/v1",
                    "TEST_OPENAI_KEY",
                    "0.02",
                    "0",
                )
            ],
        },
        {
            "name": "claude-sonnet",
            "deployments": [
                dep("anthropic", "claude-sonnet-4-5", anthropic.base_url, "TEST_ANTHROPIC_KEY", "3", "15")
            ],
        },
        {
            "name": "gemini-flash",
            "deployments": [
                dep("gemini", "gemini-2.5-flash", gemini.base_url, "TEST_GEMINI_KEY", "0.30", "2.50")
            ],
        },
        {
            "name": "anthropic.claude-3-sonnet-20240229-v1:0",
            "deployments": [
                dep(
                    "bedrock",
                    "anthropic.claude-3-sonnet-20240229-v1:0",
                    bedrock.base_url,
                    BEDROCK_KEY_ENV,
                    "3",
                    "15",
                    region="us-east-1",
                )
            ],
        },
        {
            "name": "anthropic.claude-3-haiku-20240307-v1:0",
            "deployments": [
                dep(
                    "bedrock",
                    "anthropic.claude-3-haiku-20240307-v1:0",
                    bedrock.base_url,
                    BEDROCK_KEY_ENV,
                    "0.25",
                    "1.25",
                    region="us-east-1",
                )
            ],
        },
        {
            "name": "flaky",
            "fallbacks": ["gpt-4o-mini"],
            "deployments": [{"provider": "mock", "model": "mock-error-503", "max_retries": 1}],
        },
        {
            "name": "mock-model",
            "deployments": [
                {
                    "provider": "mock",
                    "model": "mock-1",
                    "input_price_per_mtok": "1",
                    "output_price_per_mtok": "2",
                }
            ],
        },
    ]


@dataclass
class Running:
    """The gateway under test."""

    url: str
    app: Litestar
    sessions: async_sessionmaker[AsyncSession]

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.app.state.gateway
        return gateway

    async def flush(self) -> None:
        await self.gateway.writer.flush()

    async def new_key(
        self,
        *,
        grants: list[tuple[str, str]] | None = None,
        key_grants: list[tuple[str, str]] | None = None,
        tenant: bool = True,
    ) -> tuple[str, uuid.UUID, uuid.UUID | None]:
        """A tenant (``grants``, default everything) with a key; returns (secret, key id, tenant id)."""
        async with self.sessions() as session, session.begin():
            tenant_id = None
            if tenant:
                row = await create_tenant(session, ACTOR, slug=f"t-{uuid.uuid4().hex[:10]}")
                tenant_id = row.id
                for model_pattern, provider_pattern in grants if grants is not None else [("*", "*")]:
                    await add_grant(
                        session,
                        ACTOR,
                        subject_type=SubjectType.TENANT,
                        subject_id=row.id,
                        model_pattern=model_pattern,
                        provider_pattern=provider_pattern,
                    )
            new = await create_key(session, ACTOR, tenant_id=tenant_id, alias="test")
            for model_pattern, provider_pattern in key_grants or []:
                await add_grant(
                    session,
                    ACTOR,
                    subject_type=SubjectType.KEY,
                    subject_id=new.key.id,
                    model_pattern=model_pattern,
                    provider_pattern=provider_pattern,
                )
        return new.secret, new.key.id, tenant_id

    async def budget(
        self,
        level: SubjectType,
        subject_id: uuid.UUID,
        amount: str,
        *,
        kind: BudgetKind = BudgetKind.USD,
        period: str | None = "monthly",
        soft_threshold: float | None = None,
        webhook_url: str | None = None,
    ) -> uuid.UUID:
        """Set a budget and make the gateway see it at once; returns the budget id."""
        async with self.sessions() as session, session.begin():
            budget = await set_budget(
                session,
                ACTOR,
                subject_type=level,
                subject_id=subject_id,
                amount=Decimal(amount),
                kind=kind,
                period=period,
                soft_threshold=soft_threshold,
                webhook_url=webhook_url,
            )
        self.gateway.invalidate()
        return budget.id

    async def limits(self, table: type[Any], subject_id: uuid.UUID, **values: Any) -> None:
        """Set rate-limit columns on a tenant, user or key."""
        async with self.sessions() as session, session.begin():
            await session.execute(update(table).where(table.id == subject_id).values(**values))
        self.gateway.invalidate()

    async def logs(self, key_id: uuid.UUID) -> list[RequestLog]:
        await self.flush()
        async with self.sessions() as session:
            rows = await session.scalars(
                select(RequestLog).where(RequestLog.api_key_id == key_id).order_by(RequestLog.id)
            )
            return list(rows.all())

    async def key_row(self, key_id: uuid.UUID) -> ApiKey:
        async with self.sessions() as session:
            row = await session.get(ApiKey, key_id)
            assert row is not None
            return row


async def serve(app: Litestar, port: int | None = None) -> tuple[str, uvicorn.Server, asyncio.Task[None]]:
    port = port or free_port()
    config = uvicorn.Config(
        FastPath(app), host="127.0.0.1", port=port, log_level="warning", lifespan="on", access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return f"http://127.0.0.1:{port}", server, task


@pytest.fixture(scope="session")
async def running(
    backend: str,
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    fake_openai_server: FakeUpstream,
    fake_anthropic_server: FakeUpstream,
    fake_gemini_server: FakeUpstream,
    fake_bedrock_server: FakeUpstream,
) -> AsyncIterator[Running]:
    settings = make_settings(
        database_url,
        models=model_list(fake_openai_server, fake_anthropic_server, fake_gemini_server, fake_bedrock_server),
        redis_url=redis_url_for(backend),
    )
    app = create_app(settings)
    url, server, task = await serve(app)
    app.state.gateway.router.backoff_base_s = 0.01
    try:
        yield Running(url=url, app=app, sessions=sessions)
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def gw(running: Running) -> Running:
    """The running gateway with a clean routing state (no cooldowns from earlier tests)."""
    running.gateway.router._health.clear()
    return running


@pytest.fixture
async def http(gw: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gw.url, trust_env=False, timeout=30) as client:
        yield client
