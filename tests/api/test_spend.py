"""``/api/spend``: the report from the ``spend_daily`` rollup, grouped and filtered, with exact money,
labels for charts, date-range validation and tenant-admin scoping; also fed by the real batched writer."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest

from portal.db.models import SpendDaily
from portal.keys.service import create_key
from portal.spend.records import CallRecord
from portal.spend.writer import SpendWriter
from portal.tenants.service import create_tenant
from portal.timeutil import utcnow
from portal.users.service import create_user
from tests.api.conftest import ACTOR, AdminApi

DAY1 = dt.date(2024, 3, 1)
DAY2 = dt.date(2024, 3, 2)
RANGE = {"start": DAY1.isoformat(), "end": DAY2.isoformat()}


@dataclass
class World:
    tenant_id: uuid.UUID
    tenant_slug: str
    other_slug: str
    user_id: uuid.UUID
    user_email: str
    key_id: uuid.UUID
    key_prefix: str
    key2_id: uuid.UUID


def rollup(day: dt.date, **fields: Any) -> SpendDaily:
    return SpendDaily(bucket=uuid.uuid4().hex, day=day, **fields)


@pytest.fixture
async def world(admin_api: AdminApi) -> World:
    """A tenant with a user and two keys, spend on two days, and spend of another tenant."""
    marker = uuid.uuid4().hex[:8]
    async with admin_api.sessions() as session, session.begin():
        tenant = await create_tenant(session, ACTOR, slug=f"spend-{marker}")
        other = await create_tenant(session, ACTOR, slug=f"spend-other-{marker}")
        user = await create_user(session, ACTOR, email=f"ann-{marker}@example.com")
        key = await create_key(session, ACTOR, tenant_id=tenant.id, user_id=user.id, alias="ann's key")
        key2 = await create_key(session, ACTOR, tenant_id=tenant.id)
        mine = {"tenant_id": tenant.id}
        ann = {**mine, "user_id": user.id, "api_key_id": key.key.id}
        session.add_all(
            [
                rollup(
                    DAY1,
                    **ann,
                    model="gpt-a",
                    provider="openai",
                    requests=3,
                    errors=1,
                    cached_requests=1,
                    prompt_tokens=30,
                    completion_tokens=15,
                    cost=Decimal("0.1"),
                    latency_ms_sum=300.0,
                ),
                rollup(
                    DAY1,
                    **ann,
                    model="gpt-b",
                    provider="anthropic",
                    requests=2,
                    prompt_tokens=20,
                    completion_tokens=10,
                    cost=Decimal("0.2"),
                    latency_ms_sum=100.0,
                ),
                rollup(
                    DAY2,
                    **ann,
                    model="gpt-a",
                    provider="openai",
                    requests=5,
                    cached_requests=2,
                    prompt_tokens=50,
                    completion_tokens=25,
                    cost=Decimal("0.000000000001"),
                    latency_ms_sum=500.0,
                ),
                rollup(
                    DAY2,
                    **mine,
                    api_key_id=key2.key.id,
                    model="gpt-a",
                    provider="openai",
                    requests=1,
                    prompt_tokens=7,
                    cost=Decimal("0.000001"),
                    latency_ms_sum=60.0,
                ),
                rollup(
                    DAY1, tenant_id=other.id, model="gpt-a", provider="openai", requests=4, cost=Decimal(7)
                ),
                rollup(DAY2 + dt.timedelta(days=1), **ann, model="gpt-a", requests=9, cost=Decimal(9)),
            ]
        )
    return World(
        tenant_id=tenant.id,
        tenant_slug=tenant.slug,
        other_slug=other.slug,
        user_id=user.id,
        user_email=f"ann-{marker}@example.com",
        key_id=key.key.id,
        key_prefix=key.key.key_prefix,
        key2_id=key2.key.id,
    )


async def report(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/spend", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_per_day_rows_and_totals_are_exact(admin: httpx.AsyncClient, world: World) -> None:
    body = await report(admin, group_by="day", tenant=world.tenant_slug, **RANGE)
    assert body["group_by"] == ["day"]
    assert (body["start"], body["end"]) == (RANGE["start"], RANGE["end"])
    rows = body["rows"]
    assert [r["day"] for r in rows] == [RANGE["start"], RANGE["end"]]
    first, second = rows
    assert (first["requests"], first["errors"], first["cached_requests"]) == (5, 1, 1)
    assert (first["prompt_tokens"], first["completion_tokens"], first["total_tokens"]) == (50, 25, 75)
    assert first["cost"] == "0.3"
    assert first["avg_latency_ms"] == pytest.approx(80.0)
    assert first["tenant_id"] is None
    assert first["model"] is None
    assert second["cost"] == "0.000001000001"
    assert (second["requests"], second["total_tokens"]) == (6, 82)
    assert second["avg_latency_ms"] == pytest.approx(560.0 / 6)
    totals = body["totals"]
    assert totals["cost"] == "0.300001000001"
    assert (totals["requests"], totals["errors"], totals["cached_requests"]) == (11, 1, 3)
    assert (totals["prompt_tokens"], totals["completion_tokens"], totals["total_tokens"]) == (107, 50, 157)
    assert totals["avg_latency_ms"] == pytest.approx(960.0 / 11)


async def test_group_by_model_and_provider_orders_by_cost(admin: httpx.AsyncClient, world: World) -> None:
    body = await report(admin, group_by="model,provider", tenant=str(world.tenant_id), **RANGE)
    assert body["group_by"] == ["model", "provider"]
    got = [(r["model"], r["provider"], r["requests"], r["cost"]) for r in body["rows"]]
    assert got == [("gpt-b", "anthropic", 2, "0.2"), ("gpt-a", "openai", 9, "0.100001000001")]
    assert all(r["day"] is None and r["tenant_id"] is None for r in body["rows"])


async def test_rows_carry_labels_for_tenant_user_and_key(admin: httpx.AsyncClient, world: World) -> None:
    by_key = await report(admin, group_by="key", tenant=world.tenant_slug, **RANGE)
    keys = {r["api_key_id"]: r for r in by_key["rows"]}
    assert set(keys) == {str(world.key_id), str(world.key2_id)}
    assert keys[str(world.key_id)]["key_prefix"] == world.key_prefix
    assert keys[str(world.key_id)]["key_alias"] == "ann's key"
    assert keys[str(world.key_id)]["cost"] == "0.300000000001"
    assert keys[str(world.key2_id)]["cost"] == "0.000001"

    by_user = await report(admin, group_by="user", tenant=world.tenant_slug, **RANGE)
    users = {r["user_id"]: r for r in by_user["rows"]}
    assert users[str(world.user_id)]["user_email"] == world.user_email
    assert users[None]["user_email"] is None
    assert users[None]["requests"] == 1

    by_tenant = await report(admin, group_by="tenant", **RANGE)
    tenants = {r["tenant_slug"]: r for r in by_tenant["rows"]}
    assert tenants[world.tenant_slug]["cost"] == "0.300001000001"
    assert tenants[world.tenant_slug]["tenant_id"] == str(world.tenant_id)
    assert tenants[world.other_slug]["cost"] == "7"


async def test_filters_by_user_key_model_and_provider(admin: httpx.AsyncClient, world: World) -> None:
    by_email = await report(admin, group_by="", user=world.user_email, **RANGE)
    by_id = await report(admin, group_by="", user=str(world.user_id), **RANGE)
    assert by_email["rows"] == by_id["rows"]
    assert by_email["totals"]["cost"] == "0.300000000001"
    assert len(by_email["rows"]) == 1
    key2 = await report(admin, key=str(world.key2_id), **RANGE)
    assert key2["totals"]["requests"] == 1
    assert [r["tenant_slug"] for r in key2["rows"]] == [world.tenant_slug]
    model = await report(admin, tenant=world.tenant_slug, model="gpt-a", group_by="day", **RANGE)
    assert [r["cost"] for r in model["rows"]] == ["0.1", "0.000001000001"]
    provider = await report(admin, tenant=world.tenant_slug, provider="anthropic", **RANGE)
    assert provider["totals"]["cost"] == "0.2"
    one_day = await report(admin, tenant=world.tenant_slug, start=RANGE["end"], end=RANGE["end"])
    assert one_day["totals"]["requests"] == 6
    nothing = await report(admin, tenant=world.tenant_slug, model="no-such-model", **RANGE)
    assert nothing["rows"] == []
    assert nothing["totals"]["cost"] == "0"
    assert nothing["totals"]["avg_latency_ms"] == 0


async def test_default_range_is_the_last_30_days(admin_api: AdminApi, admin: httpx.AsyncClient) -> None:
    today = utcnow().date()
    model = f"m-{uuid.uuid4().hex[:8]}"
    async with admin_api.sessions() as session, session.begin():
        for age, cost in ((0, "0.5"), (29, "0.25"), (30, "100"), (45, "1000")):
            session.add(rollup(today - dt.timedelta(days=age), model=model, requests=1, cost=Decimal(cost)))
    body = await report(admin, model=model)
    assert body["start"] == (today - dt.timedelta(days=29)).isoformat()
    assert body["end"] == today.isoformat()
    assert body["totals"]["cost"] == "0.75"
    longer = await report(admin, model=model, start=(today - dt.timedelta(days=45)).isoformat())
    assert longer["end"] == today.isoformat()
    assert longer["totals"]["cost"] == "1100.75"


async def test_bad_ranges_and_groups_are_422(admin: httpx.AsyncClient) -> None:
    backwards = await admin.get("/api/spend", params={"start": "2024-03-02", "end": "2024-03-01"})
    assert backwards.status_code == 422
    assert "end" in backwards.json()["errors"]
    too_long = await admin.get("/api/spend", params={"start": "2023-01-01", "end": "2024-01-02"})
    assert too_long.status_code == 422
    leap_year = await admin.get("/api/spend", params={"start": "2024-01-01", "end": "2024-12-31"})
    assert leap_year.status_code == 200
    bad_group = await admin.get("/api/spend", params={"group_by": "day,colour"})
    assert bad_group.status_code == 422
    assert "colour" in bad_group.json()["errors"]["group_by"]
    not_a_date = await admin.get("/api/spend", params={"start": "yesterday"})
    assert not_a_date.status_code == 422
    assert "start" in not_a_date.json()["errors"]
    bad_key = await admin.get("/api/spend", params={"key": "sk-not-an-id"})
    assert bad_key.status_code == 422
    unknown_tenant = await admin.get("/api/spend", params={"tenant": "no-such-tenant-here"})
    assert unknown_tenant.status_code == 404


async def test_tenant_admin_sees_only_its_tenant(admin_api: AdminApi, world: World) -> None:
    model = f"m-{uuid.uuid4().hex[:8]}"
    async with admin_api.sessions() as session, session.begin():
        session.add(rollup(DAY1, tenant_id=admin_api.tenant_id, model=model, requests=2, cost=Decimal("1.5")))
        session.add(rollup(DAY1, tenant_id=world.tenant_id, model=model, requests=3, cost=Decimal(4)))
    async with admin_api.client("tenant_admin") as tadmin:
        own = await report(tadmin, model=model, **RANGE)
        assert [r["tenant_id"] for r in own["rows"]] == [str(admin_api.tenant_id)]
        assert own["totals"]["cost"] == "1.5"
        named = await report(tadmin, model=model, tenant=admin_api.tenant_slug, **RANGE)
        assert named["totals"] == own["totals"]
        other = await tadmin.get("/api/spend", params={"tenant": world.tenant_slug, **RANGE})
        assert other.status_code == 403
    async with admin_api.client("admin") as admin:
        everyone = await report(admin, model=model, **RANGE)
        assert everyone["totals"]["cost"] == "5.5"


async def test_viewer_and_auditor_read_spend(admin_api: AdminApi, world: World) -> None:
    for role in ("viewer", "auditor", "master"):
        async with admin_api.client(role) as client:
            body = await report(client, tenant=world.tenant_slug, **RANGE)
            assert body["totals"]["cost"] == "0.300001000001"
    async with admin_api.client(None) as anonymous:
        assert (await anonymous.get("/api/spend")).status_code == 401


async def test_report_of_calls_written_by_the_batched_writer(
    admin_api: AdminApi, admin: httpx.AsyncClient
) -> None:
    async with admin_api.sessions() as session, session.begin():
        tenant = await create_tenant(session, ACTOR, slug=f"writer-{uuid.uuid4().hex[:8]}")
        key = await create_key(session, ACTOR, tenant_id=tenant.id)
    now = utcnow()
    writer = SpendWriter(admin_api.sessions)
    for i in range(7):
        writer.submit(
            CallRecord(
                request_id=uuid.uuid4().hex,
                created_at=now,
                status_code=500 if i == 0 else 200,
                tenant_id=tenant.id,
                api_key_id=key.key.id,
                model="gpt-w",
                provider="mock",
                prompt_tokens=10,
                completion_tokens=i,
                cost=Decimal("0.000001") * i,
                latency_ms=10.0 * i,
                cached=i % 3 == 0,
            )
        )
    assert await writer.flush() == 7
    body = await report(admin, tenant=tenant.slug, group_by="day,key,model,provider")
    assert len(body["rows"]) == 1
    row = body["rows"][0]
    assert row["day"] == now.date().isoformat()
    assert (row["api_key_id"], row["key_prefix"]) == (str(key.key.id), key.key.key_prefix)
    assert (row["model"], row["provider"]) == ("gpt-w", "mock")
    assert (row["requests"], row["errors"], row["cached_requests"]) == (7, 1, 3)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (70, 21)
    assert row["cost"] == "0.000021"
    assert row["avg_latency_ms"] == pytest.approx(30.0)
    assert body["totals"]["cost"] == "0.000021"
