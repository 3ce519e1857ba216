"""Key authentication: header forms, unknown/revoked/expired keys, suspended tenants, database outage."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import update

from portal.app import create_app
from portal.db.models import ApiKey, KeyStatus, Tenant, TenantStatus
from tests.conftest import make_settings
from tests.proxy.conftest import Running

CHAT = {"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("header", ["Authorization", "X-API-Key", "x-api-key"])
async def test_each_header_form_authenticates(gw: Running, http: httpx.AsyncClient, header: str) -> None:
    secret, _, _ = await gw.new_key()
    value = f"Bearer {secret}" if header == "Authorization" else secret
    response = await http.post("/v1/chat/completions", json=CHAT, headers={header: value})
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer sk-unknown-key-123"}, {"Authorization": "Basic x"}]
)
async def test_missing_or_unknown_key_is_401_openai_error(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await http.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert response.status_code == 401
    error = response.json()["error"]
    assert "Invalid API Key" in error["message"]
    assert error["code"] == "invalid_api_key"


async def _set_key(gw: Running, key_id: object, **values: object) -> None:
    async with gw.sessions() as session, session.begin():
        await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(**values))


async def test_revoked_key_is_refused_at_once_after_invalidation(
    gw: Running, http: httpx.AsyncClient
) -> None:
    secret, key_id, _ = await gw.new_key()
    headers = {"Authorization": f"Bearer {secret}"}
    assert (await http.post("/v1/chat/completions", json=CHAT, headers=headers)).status_code == 200
    await _set_key(gw, key_id, status=KeyStatus.REVOKED)
    gw.gateway.keys.invalidate()
    response = await http.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert response.status_code == 401
    assert "Invalid API Key" in response.json()["error"]["message"]


async def test_expired_key_is_refused_without_waiting_for_the_cache(
    gw: Running, http: httpx.AsyncClient
) -> None:
    secret, key_id, _ = await gw.new_key()
    headers = {"x-api-key": secret}
    await _set_key(gw, key_id, expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
    assert (await http.post("/v1/chat/completions", json=CHAT, headers=headers)).status_code == 200
    await _set_key(gw, key_id, expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    gw.gateway.keys.invalidate()
    assert (await http.post("/v1/chat/completions", json=CHAT, headers=headers)).status_code == 401


async def test_suspended_tenant_keys_get_403(gw: Running, http: httpx.AsyncClient) -> None:
    secret, _, tenant_id = await gw.new_key()
    async with gw.sessions() as session, session.begin():
        await session.execute(
            update(Tenant).where(Tenant.id == tenant_id).values(status=TenantStatus.SUSPENDED)
        )
    gw.gateway.keys.invalidate()
    response = await http.post("/v1/chat/completions", json=CHAT, headers={"x-api-key": secret})
    assert response.status_code == 403
    assert "suspended" in response.json()["error"]["message"]


async def test_lookup_is_cached_no_database_read_per_request(gw: Running, http: httpx.AsyncClient) -> None:
    secret, _, _ = await gw.new_key()
    headers = {"x-api-key": secret}
    assert (await http.post("/v1/chat/completions", json=CHAT, headers=headers)).status_code == 200
    loads = 0
    original = gw.gateway.keys._load

    async def counting(key_hash: str) -> object:
        nonlocal loads
        loads += 1
        return await original(key_hash)

    gw.gateway.keys._load = counting  # type: ignore[method-assign]
    try:
        for _ in range(5):
            assert (await http.post("/v1/chat/completions", json=CHAT, headers=headers)).status_code == 200
    finally:
        gw.gateway.keys._load = original  # type: ignore[method-assign]
    assert loads == 0


async def test_database_outage_gives_503_never_500(tmp_path: Path) -> None:
    settings = make_settings("postgresql://postgres@127.0.0.1:1/nothing")
    async with AsyncTestClient(app=create_app(settings)) as client:
        response = await client.post(
            "/v1/chat/completions", json=CHAT, headers={"x-api-key": "sk-some-key-1234"}
        )
        missing = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "service_unavailable"
    assert missing.status_code == 401
