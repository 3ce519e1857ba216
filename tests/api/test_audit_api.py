"""``/api/audit``: the events that changes through the API leave, newest first, with every filter,
cursor pagination, and the rule that only admins and auditors read it."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx

from portal.keys.service import find_key
from portal.timeutil import utcnow
from tests.api.conftest import AdminApi


async def events(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/api/audit", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def make_tenant_history(admin: httpx.AsyncClient) -> dict[str, Any]:
    """Create, rename, suspend and delete a tenant through the API; returns the created tenant."""
    slug = f"audited-{uuid.uuid4().hex[:8]}"
    created = await admin.post("/api/tenants", json={"slug": slug, "name": "Before"})
    assert created.status_code == 201, created.text
    tenant: dict[str, Any] = created.json()
    assert (await admin.patch(f"/api/tenants/{slug}", json={"name": "After"})).status_code == 200
    assert (await admin.patch(f"/api/tenants/{slug}", json={"status": "suspended"})).status_code == 200
    assert (await admin.delete(f"/api/tenants/{slug}")).status_code == 204
    return tenant


async def test_changes_are_listed_newest_first_with_before_and_after(
    admin_api: AdminApi, admin: httpx.AsyncClient
) -> None:
    started = utcnow()
    tenant = await make_tenant_history(admin)
    items = await events(admin, target_type="tenant", target_id=tenant["id"])
    assert [e["action"] for e in items] == [
        "tenant.deleted",
        "tenant.suspended",
        "tenant.updated",
        "tenant.created",
    ]
    ids = [e["id"] for e in items]
    assert ids == sorted(ids, reverse=True)
    created, updated = items[3], items[2]
    assert created["before"] is None
    assert created["after"]["slug"] == tenant["slug"]
    assert (updated["before"]["name"], updated["after"]["name"]) == ("Before", "After")
    assert items[0]["after"] is None
    assert items[0]["before"]["status"] == "suspended"
    async with admin_api.sessions() as session:
        admin_key = await find_key(session, admin_api.keys["admin"])
    assert admin_key is not None
    for event in items:
        assert event["actor_type"] == "admin_key"
        assert event["actor_id"] == str(admin_key.id)
        assert event["actor_label"] == f"key {admin_key.key_prefix}"
        assert event["tenant_id"] == tenant["id"]
        assert event["target_type"] == "tenant"
        assert event["ip"] == "127.0.0.1"
        assert event["request_id"]
        assert dt.datetime.fromisoformat(event["created_at"]) >= started - dt.timedelta(seconds=5)
    assert set(items[0]) == {
        "id",
        "created_at",
        "actor_type",
        "actor_id",
        "actor_label",
        "action",
        "target_type",
        "target_id",
        "tenant_id",
        "before",
        "after",
        "ip",
        "request_id",
        "seq",
        "prev_hash",
        "hash",
    }


async def test_filters(admin_api: AdminApi, admin: httpx.AsyncClient) -> None:
    tenant = await make_tenant_history(admin)
    target = {"target_id": tenant["id"]}

    async def actions(**params: Any) -> list[str]:
        return [e["action"] for e in await events(admin, **params)]

    assert await actions(tenant=tenant["id"], action="tenant.") == [
        "tenant.deleted",
        "tenant.suspended",
        "tenant.updated",
        "tenant.created",
    ]
    assert await actions(**target, action="tenant.s") == ["tenant.suspended"]
    assert await actions(**target, action="tenant_") == []
    assert await actions(**target, action="key.") == []
    assert await actions(**target, target_type="key") == []
    async with admin_api.sessions() as session:
        admin_key = await find_key(session, admin_api.keys["admin"])
    assert admin_key is not None
    assert len(await actions(**target, actor=str(admin_key.id))) == 4
    assert await actions(**target, actor=str(uuid.uuid4())) == []
    all_four = await events(admin, **target)
    created_at = dt.datetime.fromisoformat(all_four[-1]["created_at"])
    deleted_at = dt.datetime.fromisoformat(all_four[0]["created_at"])
    assert len(await actions(**target, start=created_at.isoformat(), end=deleted_at.isoformat())) == 4
    assert await actions(**target, end=(created_at - dt.timedelta(seconds=1)).isoformat()) == []
    assert await actions(**target, start=(deleted_at + dt.timedelta(seconds=1)).isoformat()) == []


async def test_cursor_pagination(admin: httpx.AsyncClient) -> None:
    tenant = await make_tenant_history(admin)
    expected = [e["id"] for e in await events(admin, target_id=tenant["id"])]
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"target_id": tenant["id"], "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await admin.get("/api/audit", params=params)).json()
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        await make_tenant_history(admin)
    assert seen == expected
    assert len(seen) == 4
    assert (await admin.get("/api/audit", params={"limit": 1001})).status_code == 422
    assert (await admin.get("/api/audit", params={"cursor": "%%%"})).status_code == 422


async def test_only_admins_and_auditors_read_the_audit_log(admin_api: AdminApi) -> None:
    async with admin_api.client("admin") as admin:
        tenant = await make_tenant_history(admin)
    for role in ("auditor", "master"):
        async with admin_api.client(role) as client:
            assert len(await events(client, target_id=tenant["id"])) == 4
    for role in ("viewer", "tenant_admin"):
        async with admin_api.client(role) as client:
            refused = await client.get("/api/audit")
            assert refused.status_code == 403
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert (await client.get("/api/spend")).status_code == 200
            assert (await client.get("/api/logs")).status_code == 200
    async with admin_api.client(None) as anonymous:
        assert (await anonymous.get("/api/audit")).status_code == 401


async def test_verify_reports_the_intact_chain(admin_api: AdminApi, admin: httpx.AsyncClient) -> None:
    await make_tenant_history(admin)
    newest = (await events(admin, limit=1))[0]
    assert newest["seq"] >= 4
    assert len(newest["hash"]) == len(newest["prev_hash"]) == 64
    response = await admin.get("/api/audit/verify")
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["ok"] is True
    assert report["broken"] is None
    assert report["last_seq"] == report["head_seq"] >= newest["seq"]
    assert report["events"] >= 4
    async with admin_api.client("auditor") as auditor:
        assert (await auditor.get("/api/audit/verify")).json()["ok"] is True
    for role in ("viewer", "tenant_admin"):
        async with admin_api.client(role) as client:
            assert (await client.get("/api/audit/verify")).status_code == 403
