"""Routing under injected upstream failures: retries with backoff, passing 4xx back, fallbacks,
cooldowns, and per-tenant deployment overrides."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select

from portal import audit
from portal.db.models import Deployment, Model
from tests.fakes.server import Behaviour, FakeUpstream
from tests.proxy.conftest import Running

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


async def test_retries_on_503_then_succeeds(
    gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream
) -> None:
    secret, key_id, _ = await gw.new_key()
    fake_openai.fail(503, times=2)
    response = await http.post("/v1/chat/completions", json=CHAT, headers={"x-api-key": secret})
    assert response.status_code == 200
    assert len(fake_openai.requests) == 3
    [row] = await gw.logs(key_id)
    assert row.attempts == 3


async def test_429_is_retried_and_reported_when_exhausted(
    gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream
) -> None:
    secret, _, _ = await gw.new_key()
    fake_openai.fail(429, "slow down", times=5, retry_after=0.01)
    response = await http.post("/v1/chat/completions", json=CHAT, headers={"x-api-key": secret})
    assert response.status_code == 429
    assert "slow down" in response.json()["error"]["message"]
    assert len(fake_openai.requests) == 3


async def test_upstream_4xx_is_passed_back_without_retry(
    gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream
) -> None:
    secret, _, _ = await gw.new_key()
    fake_openai.fail(400, "Invalid 'messages': empty")
    response = await http.post("/v1/chat/completions", json=CHAT, headers={"x-api-key": secret})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Invalid 'messages': empty"
    assert len(fake_openai.requests) == 1


async def test_fallback_to_another_model(
    gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream
) -> None:
    secret, key_id, _ = await gw.new_key()
    fake_openai.script(Behaviour(text="from the fallback"))
    response = await http.post(
        "/v1/chat/completions",
        headers={"x-api-key": secret},
        json={"model": "flaky", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "from the fallback"
    [row] = await gw.logs(key_id)
    assert row.model == "flaky"
    assert row.provider == "openai"
    assert row.attempts == 3


async def test_fallback_respects_grants(gw: Running, http: httpx.AsyncClient) -> None:
    secret, _, _ = await gw.new_key(grants=[("flaky", "*")])
    response = await http.post(
        "/v1/chat/completions",
        headers={"x-api-key": secret},
        json={"model": "flaky", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 502


async def test_failing_deployment_cools_down(gw: Running, http: httpx.AsyncClient) -> None:
    secret, _, _ = await gw.new_key(grants=[("flaky", "*")])
    for _ in range(2):
        await http.post(
            "/v1/chat/completions",
            headers={"x-api-key": secret},
            json={"model": "flaky", "messages": [{"role": "user", "content": "hi"}]},
        )
    cooling = gw.gateway.router.cooldown_state()
    assert any(dep.startswith("config:flaky") for dep in cooling)
    assert all(0 < left <= 30 for left in cooling.values())


async def test_per_tenant_deployment_override(
    gw: Running, http: httpx.AsyncClient, fake_bedrock: FakeUpstream
) -> None:
    secret, key_id, tenant_id = await gw.new_key()
    other, _, _ = await gw.new_key()
    profile = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/engineering-team"
    async with gw.sessions() as session, session.begin():
        model = Model(name=f"team-model-{uuid.uuid4().hex[:6]}")
        session.add(model)
        await session.flush()
        base = {
            "model_id": model.id,
            "provider": "bedrock",
            "api_base": fake_bedrock.base_url,
            "region": "us-east-1",
            "credential_ref": "env:TEST_BEDROCK_CREDENTIALS",
        }
        session.add(Deployment(upstream_model="anthropic.claude-3-sonnet-20240229-v1:0", **base))
        session.add(Deployment(upstream_model=profile, tenant_id=tenant_id, **base))
        await audit.record(session, audit.Actor(type="test"), "model.created", target_id=model.id)
    await gw.gateway.reload_catalog()
    for key in (secret, other):
        response = await http.post(
            "/v1/chat/completions",
            headers={"x-api-key": key},
            json={"model": model.name, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert response.status_code == 200, response.text
    assert profile in fake_bedrock.requests[0].path
    assert "anthropic.claude-3-sonnet-20240229-v1:0" in fake_bedrock.requests[1].path
    [row] = await gw.logs(key_id)
    assert row.upstream_model == profile
    async with gw.sessions() as session:
        assert (
            await session.scalar(select(Deployment.id).where(Deployment.upstream_model == profile))
            is not None
        )
