"""``/api/logs``: the request log, newest first, with filters, exact money, stored prompts only when
stored, cursor pagination that survives new rows, one entry by request id, and tenant-admin scoping."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest

from portal.db.models import RequestLog
from portal.keys.service import create_key
from portal.spend.queries import call_stats
from portal.tenants.service import create_tenant
from portal.users.service import create_user
from tests.api.conftest import ACTOR, AdminApi

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


@dataclass
class Logs:
    tenant_id: uuid.UUID
    tenant_slug: str
    user_id: uuid.UUID
    key_id: uuid.UUID
    key2_id: uuid.UUID
    request_ids: list[str]
    """Request ids in insertion order (oldest first)."""


def log_row(tenant_id: uuid.UUID | None, minute: int, **fields: Any) -> RequestLog:
    values: dict[str, Any] = {
        "request_id": f"req-{uuid.uuid4().hex}",
        "created_at": T0 + dt.timedelta(minutes=minute),
        "tenant_id": tenant_id,
        "status_code": 200,
        "model": "gpt-a",
        "provider": "openai",
        **fields,
    }
    return RequestLog(**values)


async def insert(admin_api: AdminApi, rows: list[RequestLog]) -> list[str]:
    async with admin_api.sessions() as session, session.begin():
        for row in rows:
            session.add(row)
            await session.flush()
    return [row.request_id for row in rows]


@pytest.fixture
async def logs(admin_api: AdminApi) -> Logs:
    """Six calls of one tenant: two keys, successes, an upstream error, a denial, a cached answer."""
    marker = uuid.uuid4().hex[:8]
    async with admin_api.sessions() as session, session.begin():
        tenant = await create_tenant(session, ACTOR, slug=f"logs-{marker}")
        user = await create_user(session, ACTOR, email=f"bob-{marker}@example.com")
        key = await create_key(session, ACTOR, tenant_id=tenant.id, user_id=user.id)
        key2 = await create_key(session, ACTOR, tenant_id=tenant.id)
    k1 = {"api_key_id": key.key.id, "user_id": user.id, "key_prefix": key.key.key_prefix}
    k2 = {"api_key_id": key2.key.id, "key_prefix": key2.key.key_prefix}
    ids = await insert(
        admin_api,
        [
            log_row(
                tenant.id,
                0,
                **k1,
                prompt_tokens=10,
                completion_tokens=5,
                total_tokens=15,
                cost=Decimal("0.000000000001"),
                latency_ms=120.5,
                prompt='[{"role":"user","content":"hi"}]',
                response="hello",
            ),
            log_row(tenant.id, 1, **k1, status_code=502, error_type="upstream_error", error_message="boom"),
            log_row(tenant.id, 2, **k2, model="gpt-b", cost=Decimal("0.1")),
            log_row(tenant.id, 3, **k2, status_code=429, error_type="rate_limited"),
            log_row(tenant.id, 4, **k1, cached=True, cost=Decimal(0)),
            log_row(tenant.id, 5, **k1, stream=True, ttft_ms=33.0, cost=Decimal("12.345678901234")),
        ],
    )
    return Logs(tenant.id, tenant.slug, user.id, key.key.id, key2.key.id, ids)


async def listed(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/api/logs", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_newest_first_with_every_column(admin: httpx.AsyncClient, logs: Logs) -> None:
    items = await listed(admin, tenant=logs.tenant_slug)
    assert [i["request_id"] for i in items] == logs.request_ids[::-1]
    newest, oldest = items[0], items[-1]
    assert newest["cost"] == "12.345678901234"
    assert newest["stream"] is True
    assert newest["ttft_ms"] == 33.0
    assert "prompt" not in newest
    assert "response" not in newest
    assert oldest["cost"] == "0.000000000001"
    assert oldest["prompt"] == '[{"role":"user","content":"hi"}]'
    assert oldest["response"] == "hello"
    assert (oldest["prompt_tokens"], oldest["completion_tokens"], oldest["total_tokens"]) == (10, 5, 15)
    assert oldest["latency_ms"] == 120.5
    assert oldest["tenant_id"] == str(logs.tenant_id)
    assert oldest["user_id"] == str(logs.user_id)
    assert oldest["api_key_id"] == str(logs.key_id)
    assert dt.datetime.fromisoformat(oldest["created_at"]) == T0
    expected = {
        "id",
        "request_id",
        "created_at",
        "tenant_id",
        "user_id",
        "api_key_id",
        "key_prefix",
        "endpoint",
        "model",
        "deployment_id",
        "provider",
        "upstream_model",
        "status_code",
        "error_type",
        "error_message",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cost",
        "latency_ms",
        "ttft_ms",
        "stream",
        "cached",
        "estimated",
        "attempts",
        "client_ip",
    }
    assert set(newest) == expected
    assert set(oldest) == expected | {"prompt", "response"}


async def test_filters(admin: httpx.AsyncClient, logs: Logs) -> None:
    ids = logs.request_ids
    scope = {"tenant": str(logs.tenant_id)}

    async def got(**params: Any) -> list[str]:
        return [i["request_id"] for i in await listed(admin, **scope, **params)]

    assert await got(key=str(logs.key2_id)) == [ids[3], ids[2]]
    assert await got(user=str(logs.user_id)) == [ids[5], ids[4], ids[1], ids[0]]
    assert await got(model="gpt-b") == [ids[2]]
    assert await got(status=429) == [ids[3]]
    assert await got(ok="false") == [ids[3], ids[1]]
    assert await got(ok="true") == [ids[5], ids[4], ids[2], ids[0]]
    assert await got(cached="true") == [ids[4]]
    assert len(await got(cached="false")) == 5
    window = {"start": "2024-05-01T12:01:00Z", "end": "2024-05-01T12:03:00+00:00"}
    assert await got(**window) == [ids[3], ids[2], ids[1]]
    assert await got(start="2024-05-01T14:04:00+02:00") == [ids[5], ids[4]]
    assert await got(end="2024-05-01T12:00:00") == [ids[0]]
    assert await got(key=str(logs.key_id), ok="false") == [ids[1]]
    assert [i["request_id"] for i in await listed(admin, key=str(logs.key2_id))] == [ids[3], ids[2]]


async def test_cursor_pages_neither_repeat_nor_skip_when_rows_arrive(
    admin_api: AdminApi, admin: httpx.AsyncClient, logs: Logs
) -> None:
    seen: list[str] = []
    pages = 0
    cursor = None
    arrived: list[str] = []
    while True:
        params: dict[str, Any] = {"tenant": logs.tenant_slug, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        response = await admin.get("/api/logs", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [i["request_id"] for i in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        arrived += await insert(admin_api, [log_row(logs.tenant_id, 60 + pages)])
    assert pages == 3
    assert seen == logs.request_ids[::-1]
    assert len(arrived) == 2
    everything = await listed(admin, tenant=logs.tenant_slug)
    assert [i["request_id"] for i in everything] == arrived[::-1] + logs.request_ids[::-1]


async def test_limits_and_bad_input(admin: httpx.AsyncClient, logs: Logs) -> None:
    assert len(await listed(admin, tenant=logs.tenant_slug, limit=1000)) == 6
    assert (await admin.get("/api/logs", params={"limit": 1001})).status_code == 422
    assert (await admin.get("/api/logs", params={"limit": 0})).status_code == 422
    assert (await admin.get("/api/logs", params={"cursor": "not a cursor!"})).status_code == 422
    bad_status = await admin.get("/api/logs", params={"status": "teapot"})
    assert bad_status.status_code == 422
    assert "status" in bad_status.json()["errors"]
    bad_time = await admin.get("/api/logs", params={"start": "tuesday"})
    assert bad_time.status_code == 422
    assert (await admin.get("/api/logs", params={"key": "sk-1234"})).status_code == 422


async def test_one_entry_by_request_id(admin: httpx.AsyncClient, logs: Logs) -> None:
    response = await admin.get(f"/api/logs/{logs.request_ids[1]}")
    assert response.status_code == 200, response.text
    entry = response.json()
    assert entry["status_code"] == 502
    assert (entry["error_type"], entry["error_message"]) == ("upstream_error", "boom")
    assert entry["cost"] == "0"
    listed_entry = [i for i in await listed(admin, tenant=logs.tenant_slug) if i["id"] == entry["id"]]
    assert listed_entry == [entry]
    missing = await admin.get("/api/logs/req-does-not-exist")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")


async def test_tenant_admin_sees_only_its_tenant(admin_api: AdminApi, logs: Logs) -> None:
    (own,) = await insert(admin_api, [log_row(admin_api.tenant_id, 10, model=f"m-{uuid.uuid4().hex}")])
    async with admin_api.client("tenant_admin") as tadmin:
        items = await listed(tadmin, limit=1000)
        assert own in {i["request_id"] for i in items}
        assert {i["tenant_id"] for i in items} == {str(admin_api.tenant_id)}
        assert (await tadmin.get(f"/api/logs/{own}")).status_code == 200
        assert (await tadmin.get(f"/api/logs/{logs.request_ids[0]}")).status_code == 404
        refused = await tadmin.get("/api/logs", params={"tenant": logs.tenant_slug})
        assert refused.status_code == 403
        assert await listed(tadmin, key=str(logs.key_id)) == []


async def test_viewer_and_auditor_read_logs(admin_api: AdminApi, logs: Logs) -> None:
    for role in ("viewer", "auditor"):
        async with admin_api.client(role) as client:
            assert len(await listed(client, tenant=logs.tenant_slug)) == 6
            assert (await client.get(f"/api/logs/{logs.request_ids[0]}")).status_code == 200


async def test_call_stats_of_a_key_and_a_tenant(admin_api: AdminApi, logs: Logs) -> None:
    async with admin_api.sessions() as session:
        key = await call_stats(session, api_key_id=logs.key_id)
        tenant = await call_stats(session, tenant_id=logs.tenant_id)
        window = await call_stats(
            session,
            tenant_id=logs.tenant_id,
            start=T0 + dt.timedelta(minutes=1),
            end=T0 + dt.timedelta(minutes=3),
        )
        nothing = await call_stats(session, api_key_id=uuid.uuid4())
    assert key.total_requests == 4
    assert key.total_tokens == 15
    assert key.total_cost == Decimal("12.345678901235")
    assert key.success_rate == 0.75
    assert key.avg_latency_ms == pytest.approx(120.5 / 4)
    assert key.last_request_at == T0 + dt.timedelta(minutes=5)
    assert key.last_request_at.tzinfo is not None
    assert tenant.total_requests == 6
    assert tenant.total_cost == Decimal("12.445678901235")
    assert tenant.success_rate == pytest.approx(4 / 6)
    assert window.total_requests == 3
    assert window.success_rate == pytest.approx(1 / 3)
    assert window.last_request_at == T0 + dt.timedelta(minutes=3)
    assert (nothing.total_requests, nothing.total_cost, nothing.success_rate) == (0, Decimal(0), 0.0)
    assert nothing.last_request_at is None
