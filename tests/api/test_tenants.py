"""``/api/tenants``: CRUD, validation (422 with field messages), conflicts (409), unknown ids (404),
tenant-admin scoping, and the audit trail of every change."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select

from portal.db.models import AuditEvent
from tests.api.conftest import AdminApi


def slug() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


async def test_create_read_update_delete(admin_api: AdminApi, admin: httpx.AsyncClient) -> None:
    name = slug()
    created = await admin.post("/api/tenants", json={"slug": name, "name": "Team A", "rpm_limit": 60})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["slug"] == name
    assert body["rpm_limit"] == 60
    assert body["spend_total"] == "0"

    by_slug = await admin.get(f"/api/tenants/{name}")
    by_id = await admin.get(f"/api/tenants/{body['id']}")
    assert by_slug.json() == by_id.json() == body

    changed = await admin.patch(f"/api/tenants/{name}", json={"status": "suspended", "rpm_limit": None})
    assert changed.status_code == 200, changed.text
    assert changed.json()["status"] == "suspended"
    assert changed.json()["rpm_limit"] is None

    assert (await admin.delete(f"/api/tenants/{name}")).status_code == 204
    gone = await admin.get(f"/api/tenants/{name}")
    assert gone.status_code == 404
    assert gone.headers["content-type"].startswith("application/problem+json")

    async with admin_api.sessions() as session:
        events = (
            await session.scalars(
                select(AuditEvent).where(AuditEvent.target_id == body["id"]).order_by(AuditEvent.id)
            )
        ).all()
    assert [e.action for e in events] == ["tenant.created", "tenant.suspended", "tenant.deleted"]
    assert events[1].before is not None
    assert events[1].before["status"] == "active"
    assert events[1].after is not None
    assert events[1].after["status"] == "suspended"
    assert {e.actor_type for e in events} == {"admin_key"}


async def test_validation_errors_are_422_with_fields(admin: httpx.AsyncClient) -> None:
    bad = await admin.post("/api/tenants", json={"slug": "Not A Slug!", "rpm_limit": 0})
    assert bad.status_code == 422
    problem = bad.json()
    assert problem["status"] == 422
    assert "rpm_limit" in problem["errors"]

    bad_slug = await admin.post("/api/tenants", json={"slug": "Not A Slug!"})
    assert bad_slug.status_code == 422
    assert "slug" in bad_slug.json()["errors"]

    typo = await admin.post("/api/tenants", json={"slug": slug(), "rpm_limt": 5})
    assert typo.status_code == 422
    assert "rpm_limt" in typo.json()["detail"]

    not_json = await admin.post(
        "/api/tenants", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert not_json.status_code in {400, 422}
    assert not_json.json()["status"] == not_json.status_code


async def test_duplicate_slug_is_409(admin: httpx.AsyncClient) -> None:
    name = slug()
    assert (await admin.post("/api/tenants", json={"slug": name})).status_code == 201
    again = await admin.post("/api/tenants", json={"slug": name})
    assert again.status_code == 409
    assert name in again.json()["detail"]


async def test_list_paginates_with_a_cursor(admin: httpx.AsyncClient) -> None:
    marker = uuid.uuid4().hex[:6]
    made = [
        (await admin.post("/api/tenants", json={"slug": f"p-{marker}-{i}"})).json()["id"] for i in range(5)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"search": marker, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await admin.get("/api/tenants", params=params)).json()
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made
    bad = await admin.get("/api/tenants", params={"cursor": "!!!"})
    assert bad.status_code == 422


async def test_tenant_admin_sees_only_its_tenant(admin_api: AdminApi, admin: httpx.AsyncClient) -> None:
    other = (await admin.post("/api/tenants", json={"slug": slug()})).json()
    async with admin_api.client("tenant_admin") as tadmin:
        listed = (await tadmin.get("/api/tenants")).json()["items"]
        assert [t["id"] for t in listed] == [str(admin_api.tenant_id)]
        assert (await tadmin.get(f"/api/tenants/{admin_api.tenant_slug}")).status_code == 200
        assert (await tadmin.get(f"/api/tenants/{other['id']}")).status_code == 404
        assert (await tadmin.post("/api/tenants", json={"slug": slug()})).status_code == 403


async def test_no_key_is_401_and_a_proxy_key_is_403(admin_api: AdminApi) -> None:
    async with admin_api.client(None) as anonymous:
        response = await anonymous.get("/api/tenants")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    async with admin_api.client(key="sk-not-a-real-key") as wrong:
        assert (await wrong.get("/api/tenants")).status_code == 401
    async with admin_api.client("master") as master:
        assert (await master.get("/api/tenants")).status_code == 200


async def test_payload_logging_flag_is_set_through_patch(
    admin_api: AdminApi, admin: httpx.AsyncClient
) -> None:
    name = slug()
    created = await admin.post("/api/tenants", json={"slug": name})
    assert created.json()["log_prompts"] is False
    changed = await admin.patch(f"/api/tenants/{name}", json={"log_prompts": True})
    assert changed.status_code == 200, changed.text
    assert changed.json()["log_prompts"] is True
    async with admin_api.sessions() as session:
        event = (
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.target_id == created.json()["id"], AuditEvent.action == "tenant.updated")
                .order_by(AuditEvent.id)
            )
        ).one()
    assert event.before is not None
    assert event.before["log_prompts"] is False
    assert event.after is not None
    assert event.after["log_prompts"] is True
