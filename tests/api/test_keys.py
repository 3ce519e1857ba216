"""``/api/keys``: create (secret once), read, list, update, block/unblock, revoke, rotate with a grace
period, delete; every change reaching the proxy at once; tenant-admin scoping; nobody raising its own
role; validation (422), conflicts (409), unknown ids (404); the audit trail, and no event for a
refused change."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import func, select

from portal.db.models import AdminRole, ApiKey, AuditEvent, Budget, Grant, SubjectType
from portal.grants.service import add_grant
from portal.keys.secrets import display_prefix
from portal.keys.service import create_key
from portal.limits.budgets import set_budget
from portal.tenants.service import create_tenant
from tests.api.conftest import ACTOR, AdminApi

VIEW_FIELDS = {
    "id",
    "key_prefix",
    "alias",
    "tenant_id",
    "user_id",
    "role",
    "status",
    "expires_at",
    "last_used_at",
    "revoked_at",
    "replaced_by_id",
    "source",
    "metadata",
    "rpm_limit",
    "tpm_limit",
    "max_parallel",
    "cache_enabled",
    "spend_total",
    "created_by",
    "created_at",
    "updated_at",
}


async def new_tenant(api: AdminApi, **limits: Any) -> tuple[uuid.UUID, str, str]:
    """A fresh tenant (with ``limits``), a tenant grant on every model, and a tenant_admin key for it:
    (tenant id, slug, tenant admin secret)."""
    async with api.sessions() as session, session.begin():
        tenant = await create_tenant(session, ACTOR, slug=f"k-{uuid.uuid4().hex[:10]}", **limits)
        await add_grant(
            session, ACTOR, subject_type=SubjectType.TENANT, subject_id=tenant.id, tenant_id=tenant.id
        )
        admin_key = await create_key(session, ACTOR, role=AdminRole.TENANT_ADMIN, tenant_id=tenant.id)
    return tenant.id, tenant.slug, admin_key.secret


async def events_of(api: AdminApi, target_id: str) -> list[AuditEvent]:
    async with api.sessions() as session:
        query = select(AuditEvent).where(AuditEvent.target_id == target_id).order_by(AuditEvent.id)
        return list((await session.scalars(query)).all())


async def event_count(api: AdminApi) -> int:
    async with api.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


async def proxy_status(api: AdminApi, secret: str, path: str = "/v1/models") -> int:
    async with api.client(key=secret) as client:
        return (await client.get(path)).status_code


async def test_create_read_list_update_delete(admin_api: AdminApi, admin: httpx.AsyncClient) -> None:
    _, slug, _ = await new_tenant(admin_api)
    marker = uuid.uuid4().hex[:8]
    created = await admin.post(
        "/api/keys",
        json={
            "tenant": slug,
            "alias": f"ci {marker}",
            "duration": "30d",
            "metadata": {"team": "data"},
            "rpm_limit": 60,
            "cache_enabled": True,
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    secret = body.pop("key")
    assert secret.startswith("sk-")
    assert len(secret) > 40
    assert set(body) == VIEW_FIELDS
    assert body["key_prefix"] == display_prefix(secret)
    assert body["role"] is None
    assert body["status"] == "active"
    assert body["spend_total"] == "0"
    assert body["rpm_limit"] == 60
    assert body["cache_enabled"] is True
    assert body["metadata"] == {"team": "data"}
    expires = dt.datetime.fromisoformat(body["expires_at"])
    assert dt.timedelta(days=29) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(days=30)

    read = await admin.get(f"/api/keys/{body['id']}")
    assert read.status_code == 200
    assert read.json() == body
    assert secret not in read.text

    listed = (await admin.get("/api/keys", params={"search": marker})).json()
    assert [k["id"] for k in listed["items"]] == [body["id"]]
    assert "key" not in listed["items"][0]
    by_tenant = (await admin.get("/api/keys", params={"tenant": slug})).json()["items"]
    assert {k["id"] for k in by_tenant} >= {body["id"]}
    admins = (await admin.get("/api/keys", params={"admin": "true", "tenant": slug})).json()["items"]
    assert all(k["role"] is not None for k in admins)
    assert body["id"] not in {k["id"] for k in admins}

    changed = await admin.patch(
        f"/api/keys/{body['id']}", json={"alias": "renamed", "rpm_limit": None, "expires_at": None}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["alias"] == "renamed"
    assert changed.json()["rpm_limit"] is None
    assert changed.json()["expires_at"] is None

    assert (await admin.delete(f"/api/keys/{body['id']}")).status_code == 204
    gone = await admin.get(f"/api/keys/{body['id']}")
    assert gone.status_code == 404
    assert gone.headers["content-type"].startswith("application/problem+json")

    events = await events_of(admin_api, body["id"])
    assert [e.action for e in events] == ["key.created", "key.updated", "key.deleted"]
    assert events[1].before is not None
    assert events[1].before["alias"] == f"ci {marker}"
    assert events[1].after is not None
    assert events[1].after["alias"] == "renamed"
    assert events[1].before["rpm_limit"] == 60
    assert events[1].after["rpm_limit"] is None
    assert events[2].before is not None
    assert events[2].after is None
    for event in events:
        assert secret not in json.dumps([event.before, event.after])
        assert event.actor_type == "admin_key"


async def test_validation_conflicts_and_unknown_ids(admin_api: AdminApi, admin: httpx.AsyncClient) -> None:
    supplied = f"sk-mine-{uuid.uuid4().hex}"
    first = await admin.post("/api/keys", json={"key": supplied, "alias": "supplied"})
    assert first.status_code == 201
    assert first.json()["key"] == supplied
    by_secret = await admin.get(f"/api/keys/{supplied}")
    assert by_secret.status_code == 200
    assert by_secret.json()["id"] == first.json()["id"]

    naive = await admin.post("/api/keys", json={"expires_at": "2099-01-01T00:00:00"})
    assert naive.status_code == 201
    assert dt.datetime.fromisoformat(naive.json()["expires_at"]) == dt.datetime(2099, 1, 1, tzinfo=dt.UTC)

    events_before = await event_count(admin_api)
    again = await admin.post("/api/keys", json={"key": supplied})
    assert again.status_code == 409
    assert supplied not in again.text

    cases: list[tuple[dict[str, object], str]] = [
        ({"key": "short"}, "key"),
        ({"tenant": "no-such-tenant"}, "tenant"),
        ({"user": "nobody@example.com"}, "user"),
        ({"role": "superuser"}, "role"),
        ({"role": "tenant_admin"}, "tenant"),
        ({"rpm_limit": 0}, "rpm_limit"),
        ({"duration": "forever"}, "duration"),
        ({"duration": "1d", "expires_at": "2099-01-01T00:00:00Z"}, "duration"),
        ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ]
    for payload, field in cases:
        bad = await admin.post("/api/keys", json=payload)
        assert bad.status_code == 422, (payload, bad.text)
        assert field in bad.json()["errors"], (payload, bad.json())
    typo = await admin.post("/api/keys", json={"alais": "x"})
    assert typo.status_code == 422
    assert "alais" in typo.json()["detail"]
    assert await event_count(admin_api) == events_before

    key_id = first.json()["id"]
    assert (await admin.patch(f"/api/keys/{key_id}", json={"rpm_limit": -1})).status_code == 422
    assert (
        await admin.post(f"/api/keys/{key_id}/rotate", json={"grace_period_s": 31 * 86400})
    ).status_code == 422
    assert await event_count(admin_api) == events_before

    unknown = str(uuid.uuid4())
    for method, path in [
        ("GET", f"/api/keys/{unknown}"),
        ("PATCH", f"/api/keys/{unknown}"),
        ("DELETE", f"/api/keys/{unknown}"),
        ("POST", f"/api/keys/{unknown}/revoke"),
        ("POST", f"/api/keys/{unknown}/block"),
        ("POST", f"/api/keys/{unknown}/rotate"),
        ("GET", "/api/keys/sk-not-a-key-at-all"),
    ]:
        response = await admin.request(method, path, json={} if method in {"PATCH", "POST"} else None)
        assert response.status_code == 404, (method, path, response.text)


async def test_changes_reach_the_proxy_at_once(admin_api: AdminApi, admin: httpx.AsyncClient) -> None:
    _, slug, _ = await new_tenant(admin_api)
    supplied = f"sk-chosen-{uuid.uuid4().hex}"
    assert await proxy_status(admin_api, supplied) == 401  # now negatively cached by the gateway
    created = await admin.post("/api/keys", json={"tenant": slug, "key": supplied})
    assert created.status_code == 201
    key_id = created.json()["id"]
    assert await proxy_status(admin_api, supplied) == 200

    assert (await admin.post(f"/api/keys/{key_id}/block")).json()["status"] == "blocked"
    assert await proxy_status(admin_api, supplied) == 401
    assert (await admin.post(f"/api/keys/{key_id}/unblock")).json()["status"] == "active"
    assert await proxy_status(admin_api, supplied) == 200

    assert (await admin.patch(f"/api/keys/{key_id}", json={"rpm_limit": 7})).status_code == 200
    async with admin_api.client(key=supplied) as client:
        usage = await client.get("/v1/me/usage")
    assert usage.status_code == 200
    assert usage.json()["rpm_limit"] == 7

    assert (await admin.patch(f"/api/keys/{key_id}", json={"duration": "1s"})).status_code == 200
    await asyncio.sleep(1.2)
    assert await proxy_status(admin_api, supplied) == 401
    assert (await admin.patch(f"/api/keys/{key_id}", json={"expires_at": None})).status_code == 200
    assert await proxy_status(admin_api, supplied) == 200

    revoked = await admin.post(f"/api/keys/{key_id}/revoke")
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked"
    assert revoked.json()["revoked_at"] is not None
    assert await proxy_status(admin_api, supplied) == 401

    events_before = await event_count(admin_api)
    for action in ("unblock", "block", "rotate"):
        refused = await admin.post(f"/api/keys/{key_id}/{action}")
        assert refused.status_code == 409, (action, refused.text)
    assert (await admin.patch(f"/api/keys/{key_id}", json={"alias": "x"})).status_code == 409
    assert await event_count(admin_api) == events_before
    assert await proxy_status(admin_api, supplied) == 401

    other = (await admin.post("/api/keys", json={"tenant": slug})).json()
    assert await proxy_status(admin_api, other["key"]) == 200
    assert (await admin.delete(f"/api/keys/{other['id']}")).status_code == 204
    assert await proxy_status(admin_api, other["key"]) == 401

    actions = [e.action for e in await events_of(admin_api, key_id)]
    assert actions == [
        "key.created",
        "key.blocked",
        "key.unblocked",
        "key.updated",
        "key.updated",
        "key.updated",
        "key.revoked",
    ]


async def test_rotate_with_grace_period(admin_api: AdminApi, admin: httpx.AsyncClient) -> None:
    tenant_id, slug, _ = await new_tenant(admin_api)
    user = (await admin.post("/api/users", json={"email": f"rot-{uuid.uuid4().hex[:8]}@example.com"})).json()
    old = (
        await admin.post(
            "/api/keys",
            json={
                "tenant": slug,
                "user": user["id"],
                "alias": "rotating",
                "metadata": {"app": "billing"},
                "rpm_limit": 50,
                "tpm_limit": 5000,
                "max_parallel": 3,
                "cache_enabled": True,
            },
        )
    ).json()
    old_id = uuid.UUID(old["id"])
    async with admin_api.sessions() as session, session.begin():
        await add_grant(
            session, ACTOR, subject_type=SubjectType.KEY, subject_id=old_id, model_pattern="gpt-*"
        )
        await set_budget(
            session,
            ACTOR,
            subject_type=SubjectType.KEY,
            subject_id=old_id,
            amount=Decimal("12.5"),
            period="monthly",
        )
    assert await proxy_status(admin_api, old["key"]) == 200

    rotated = await admin.post(f"/api/keys/{old['id']}/rotate", json={"grace_period_s": 2})
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    assert new["key"] != old["key"]
    assert new["id"] != old["id"]
    for field in (
        "tenant_id",
        "user_id",
        "alias",
        "role",
        "metadata",
        "rpm_limit",
        "tpm_limit",
        "max_parallel",
    ):
        assert new[field] == old[field], field
    assert new["cache_enabled"] is True
    assert new["status"] == "active"
    old_now = (await admin.get(f"/api/keys/{old['id']}")).json()
    assert old_now["replaced_by_id"] == new["id"]
    assert old_now["expires_at"] is not None

    async with admin_api.sessions() as session:
        grants = (
            await session.scalars(
                select(Grant).where(
                    Grant.subject_type == SubjectType.KEY, Grant.subject_id == uuid.UUID(new["id"])
                )
            )
        ).all()
        budgets = (
            await session.scalars(
                select(Budget).where(
                    Budget.subject_type == SubjectType.KEY, Budget.subject_id == uuid.UUID(new["id"])
                )
            )
        ).all()
    assert [(g.model_pattern, g.provider_pattern) for g in grants] == [("gpt-*", "*")]
    assert [(b.amount, b.period) for b in budgets] == [(Decimal("12.5"), "monthly")]
    async with admin_api.client(key=new["key"]) as client:
        usage = (await client.get("/v1/me/usage")).json()
    assert usage["rpm_limit"] == 50
    assert usage["tenant"] == slug
    assert [b["max_budget"] for b in usage["levels"]["key"]["budgets"]] == ["12.5"]

    assert await proxy_status(admin_api, old["key"]) == 200  # within the grace period
    assert await proxy_status(admin_api, new["key"]) == 200
    assert (await admin.post(f"/api/keys/{old['id']}/rotate")).status_code == 409  # already rotated
    await asyncio.sleep(2.3)
    assert await proxy_status(admin_api, old["key"]) == 401
    assert await proxy_status(admin_api, new["key"]) == 200

    immediate = await admin.post(f"/api/keys/{new['id']}/rotate", json={"grace_period_s": 0})
    assert immediate.status_code == 201
    assert await proxy_status(admin_api, new["key"]) == 401
    assert await proxy_status(admin_api, immediate.json()["key"]) == 200

    no_body = await admin.post(f"/api/keys/{immediate.json()['id']}/rotate")
    assert no_body.status_code == 201
    assert await proxy_status(admin_api, immediate.json()["key"]) == 401

    actions = [e.action for e in await events_of(admin_api, old["id"])]
    assert actions == ["key.created", "key.rotated"]
    created = (await events_of(admin_api, new["id"]))[0]
    assert created.action == "key.created"
    assert created.after is not None
    assert created.after["rotated_from"] == old["id"]
    assert created.tenant_id == tenant_id


async def test_tenant_admin_acts_only_in_its_tenant(admin_api: AdminApi, admin: httpx.AsyncClient) -> None:
    tenant_id, slug, tadmin_secret = await new_tenant(admin_api, rpm_limit=100, tpm_limit=10_000)
    _, other_slug, _ = await new_tenant(admin_api)
    foreign = (await admin.post("/api/keys", json={"tenant": other_slug, "alias": "foreign"})).json()
    outsider = (
        await admin.post("/api/users", json={"email": f"out-{uuid.uuid4().hex[:8]}@example.com"})
    ).json()

    async with admin_api.client(key=tadmin_secret) as tadmin:
        mine = await tadmin.post("/api/keys", json={"alias": "mine"})
        assert mine.status_code == 201, mine.text
        assert mine.json()["tenant_id"] == str(tenant_id)
        explicit = await tadmin.post("/api/keys", json={"tenant": slug, "role": "tenant_admin"})
        assert explicit.status_code == 201
        assert explicit.json()["role"] == "tenant_admin"

        assert (await tadmin.post("/api/keys", json={"tenant": other_slug})).status_code == 403
        for role in ("admin", "viewer", "auditor"):
            refused = await tadmin.post("/api/keys", json={"role": role})
            assert refused.status_code == 403, (role, refused.text)
        too_fast = await tadmin.post(
            "/api/keys", json={"rpm_limit": 101, "tpm_limit": 20_000, "max_parallel": 5}
        )
        assert too_fast.status_code == 422
        assert set(too_fast.json()["errors"]) == {"rpm_limit", "tpm_limit"}
        assert (await tadmin.post("/api/keys", json={"rpm_limit": 100})).status_code == 201
        raise_later = await tadmin.patch(f"/api/keys/{mine.json()['id']}", json={"tpm_limit": 10_001})
        assert raise_later.status_code == 422
        assert "tpm_limit" in raise_later.json()["errors"]
        assert (await tadmin.post("/api/keys", json={"user": outsider["id"]})).status_code == 422

        listed = (await tadmin.get("/api/keys", params={"limit": 1000})).json()["items"]
        assert listed
        assert {k["tenant_id"] for k in listed} == {str(tenant_id)}
        assert (await tadmin.get("/api/keys", params={"tenant": other_slug})).status_code == 403
        for method, path in [
            ("GET", f"/api/keys/{foreign['id']}"),
            ("PATCH", f"/api/keys/{foreign['id']}"),
            ("DELETE", f"/api/keys/{foreign['id']}"),
            ("POST", f"/api/keys/{foreign['id']}/revoke"),
            ("POST", f"/api/keys/{foreign['id']}/rotate"),
        ]:
            response = await tadmin.request(method, path, json={} if method in {"PATCH", "POST"} else None)
            assert response.status_code == 404, (method, path, response.text)
    assert await proxy_status(admin_api, foreign["key"]) == 200

    # an admin may give a key any limit, but never above its tenant's own limits either
    assert (await admin.post("/api/keys", json={"tenant": slug, "max_parallel": 1000})).status_code == 201
    assert (await admin.post("/api/keys", json={"tenant": slug, "rpm_limit": 1000})).status_code == 422


async def test_nobody_raises_its_own_role(admin_api: AdminApi, admin: httpx.AsyncClient) -> None:
    tenant_id, slug, tadmin_secret = await new_tenant(admin_api)
    async with admin_api.sessions() as session:
        own = await session.scalar(
            select(ApiKey).where(ApiKey.tenant_id == tenant_id, ApiKey.role.is_not(None))
        )
        assert own is not None
        own_id = str(own.id)
    auditor = (await admin.post("/api/keys", json={"tenant": slug, "role": "auditor"})).json()
    peer = (await admin.post("/api/keys", json={"tenant": slug, "role": "tenant_admin"})).json()

    async with admin_api.client(key=tadmin_secret) as tadmin:
        for role in ("admin", None, "viewer"):
            refused = await tadmin.patch(f"/api/keys/{own_id}", json={"role": role})
            assert refused.status_code == 403, (role, refused.text)
        assert (await tadmin.patch(f"/api/keys/{own_id}", json={"alias": "me"})).status_code == 200
        assert (await tadmin.patch(f"/api/keys/{peer['id']}", json={"role": "viewer"})).status_code == 403
        demoted = await tadmin.patch(f"/api/keys/{peer['id']}", json={"role": None})
        assert demoted.status_code == 200
        assert demoted.json()["role"] is None
        # a key holding rights the caller lacks is out of its hands
        assert (await tadmin.post(f"/api/keys/{auditor['id']}/revoke")).status_code == 403
        assert (await tadmin.get(f"/api/keys/{auditor['id']}")).status_code == 200

    async with admin_api.client("viewer") as viewer:
        assert (await viewer.post("/api/keys", json={})).status_code == 403
        assert (await viewer.get("/api/keys")).status_code == 200

    admin_key = (await admin.post("/api/keys", json={"role": "admin", "alias": "second admin"})).json()
    async with admin_api.client(key=admin_key["key"]) as second:
        assert (
            await second.patch(f"/api/keys/{admin_key['id']}", json={"role": "viewer"})
        ).status_code == 403
        promoted = await second.patch(f"/api/keys/{peer['id']}", json={"role": "tenant_admin"})
        assert promoted.status_code == 200
        assert promoted.json()["role"] == "tenant_admin"
    events = await events_of(admin_api, peer["id"])
    assert [e.action for e in events] == ["key.created", "key.updated", "key.updated"]
    assert events[1].before is not None
    assert events[1].before["role"] == "tenant_admin"
    assert events[1].after is not None
    assert events[1].after["role"] is None
