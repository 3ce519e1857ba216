"""``/api/users`` and ``/api/tenants/{tenant}/members``: CRUD, lookups by id/email/external id,
validation (422), duplicates (409), unknown ids (404), memberships, deleting a user with everything
that hangs off it, tenant-admin scoping, the global role reserved to admins, and the audit trail."""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx
from sqlalchemy import func, select

from portal.db.models import ApiKey, AuditEvent, Budget, Grant, Membership, SubjectType
from portal.grants.service import add_grant
from portal.limits.budgets import set_budget
from tests.api.conftest import ACTOR, AdminApi
from tests.api.test_keys import event_count, events_of, new_tenant, proxy_status


def email() -> str:
    return f"u-{uuid.uuid4().hex[:10]}@example.com"


async def test_create_read_update_list_delete(admin_api: AdminApi, admin: httpx.AsyncClient) -> None:
    address = email()
    external = f"ext-{uuid.uuid4().hex[:8]}"
    created = await admin.post(
        "/api/users",
        json={
            "email": address.upper(),
            "external_id": external,
            "display_name": "Ada Lovelace",
            "metadata": {"cost_center": "42"},
            "rpm_limit": 30,
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["email"] == address
    assert body["role"] == "none"
    assert body["status"] == "active"
    assert body["spend_total"] == "0"
    assert body["rpm_limit"] == 30
    assert body["memberships"] == []
    for ref in (body["id"], address, external):
        read = await admin.get(f"/api/users/{ref}")
        assert read.status_code == 200, ref
        assert read.json() == body

    changed = await admin.patch(
        f"/api/users/{address}", json={"display_name": "A. Lovelace", "status": "disabled", "rpm_limit": None}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["display_name"] == "A. Lovelace"
    assert changed.json()["status"] == "disabled"
    assert changed.json()["rpm_limit"] is None

    listed = (await admin.get("/api/users", params={"search": external})).json()["items"]
    assert [u["id"] for u in listed] == [body["id"]]

    assert (await admin.delete(f"/api/users/{body['id']}")).status_code == 204
    assert (await admin.get(f"/api/users/{body['id']}")).status_code == 404
    events = await events_of(admin_api, body["id"])
    assert [e.action for e in events] == ["user.created", "user.updated", "user.deleted"]
    assert events[1].before is not None
    assert events[1].before["status"] == "active"
    assert events[1].after is not None
    assert events[1].after["status"] == "disabled"


async def test_validation_duplicates_and_unknown(admin_api: AdminApi, admin: httpx.AsyncClient) -> None:
    address = email()
    first = await admin.post("/api/users", json={"email": address, "external_id": f"x-{address}"})
    assert first.status_code == 201
    other = (await admin.post("/api/users", json={"email": email()})).json()
    before = await event_count(admin_api)
    for payload in ({"email": address}, {"email": address.upper()}, {"external_id": f"x-{address}"}):
        duplicate = await admin.post("/api/users", json=payload)
        assert duplicate.status_code == 409, payload
    assert (await admin.patch(f"/api/users/{other['id']}", json={"email": address})).status_code == 409

    cases: list[tuple[dict[str, object], str]] = [
        ({"email": "not-an-email"}, "email"),
        ({"role": "root"}, "role"),
        ({"rpm_limit": 0}, "rpm_limit"),
        ({"tenant": "no-such-tenant"}, "tenant"),
    ]
    for case, field in cases:
        bad = await admin.post("/api/users", json=case)
        assert bad.status_code == 422, (case, bad.text)
        assert field in bad.json()["errors"], (case, bad.json())
    assert (await admin.post("/api/users", json={"emial": address})).status_code == 422
    assert (await admin.patch(f"/api/users/{other['id']}", json={"status": "gone"})).status_code == 422
    assert await event_count(admin_api) == before

    unknown = str(uuid.uuid4())
    assert (await admin.get(f"/api/users/{unknown}")).status_code == 404
    assert (await admin.get("/api/users/nobody@example.com")).status_code == 404
    assert (await admin.patch(f"/api/users/{unknown}", json={})).status_code == 404
    assert (await admin.delete(f"/api/users/{unknown}")).status_code == 404
    assert (await admin.get(f"/api/tenants/{unknown}/members")).status_code == 404
    assert (await admin.put(f"/api/tenants/{unknown}/members/{other['id']}", json={})).status_code == 404


async def test_list_paginates(admin: httpx.AsyncClient) -> None:
    marker = uuid.uuid4().hex[:8]
    made = [
        (await admin.post("/api/users", json={"email": f"{marker}-{i}@example.com"})).json()["id"]
        for i in range(5)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {
            "search": marker,
            "limit": 2,
            **({"cursor": cursor} if cursor else {}),
        }
        page = (await admin.get("/api/users", params=params)).json()
        seen += [u["id"] for u in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made


async def test_members(admin_api: AdminApi, admin: httpx.AsyncClient) -> None:
    tenant_id, slug, _ = await new_tenant(admin_api)
    user = (await admin.post("/api/users", json={"email": email()})).json()

    added = await admin.put(f"/api/tenants/{slug}/members/{user['email']}", json={"role": "member"})
    assert added.status_code == 200, added.text
    assert added.json()["role"] == "member"
    assert added.json()["tenant_id"] == str(tenant_id)
    same = await admin.put(f"/api/tenants/{slug}/members/{user['id']}", json={"role": "member"})
    assert same.status_code == 200
    promoted = await admin.put(
        f"/api/tenants/{tenant_id}/members/{user['id']}", json={"role": "tenant_admin"}
    )
    assert promoted.json()["role"] == "tenant_admin"
    assert (
        await admin.put(f"/api/tenants/{slug}/members/{user['id']}", json={"role": "owner"})
    ).status_code == 422

    members = (await admin.get(f"/api/tenants/{slug}/members")).json()["items"]
    assert [(m["user_id"], m["role"], m["email"]) for m in members] == [
        (user["id"], "tenant_admin", user["email"])
    ]
    view = (await admin.get(f"/api/users/{user['id']}")).json()
    assert view["memberships"] == [{"tenant_id": str(tenant_id), "role": "tenant_admin"}]
    by_tenant = (await admin.get("/api/users", params={"tenant": slug})).json()["items"]
    assert [u["id"] for u in by_tenant] == [user["id"]]

    assert (await admin.delete(f"/api/tenants/{slug}/members/{user['id']}")).status_code == 204
    assert (await admin.delete(f"/api/tenants/{slug}/members/{user['id']}")).status_code == 404
    assert (await admin.get(f"/api/tenants/{slug}/members")).json()["items"] == []

    async with admin_api.sessions() as session:
        events = (
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.tenant_id == tenant_id, AuditEvent.action.like("member.%"))
                .order_by(AuditEvent.id)
            )
        ).all()
    assert [e.action for e in events] == ["member.added", "member.updated", "member.removed"]
    assert events[1].before is not None
    assert events[1].before["role"] == "member"
    assert events[1].after is not None
    assert events[1].after["role"] == "tenant_admin"


async def test_delete_user_removes_keys_memberships_grants_budgets(
    admin_api: AdminApi, admin: httpx.AsyncClient
) -> None:
    tenant_id, slug, _ = await new_tenant(admin_api)
    user = (await admin.post("/api/users", json={"email": email(), "tenant": slug})).json()
    assert user["memberships"] == [{"tenant_id": str(tenant_id), "role": "member"}]
    key = (await admin.post("/api/keys", json={"tenant": slug, "user": user["email"]})).json()
    assert key["user_id"] == user["id"]
    user_id, key_id = uuid.UUID(user["id"]), uuid.UUID(key["id"])
    async with admin_api.sessions() as session, session.begin():
        for subject_type, subject_id in ((SubjectType.USER, user_id), (SubjectType.KEY, key_id)):
            await add_grant(session, ACTOR, subject_type=subject_type, subject_id=subject_id)
            await set_budget(
                session, ACTOR, subject_type=subject_type, subject_id=subject_id, amount=Decimal(5)
            )
    assert await proxy_status(admin_api, key["key"]) == 200

    assert (await admin.delete(f"/api/users/{user['email']}")).status_code == 204
    assert await proxy_status(admin_api, key["key"]) == 401
    assert (await admin.get(f"/api/keys/{key['id']}")).status_code == 404
    async with admin_api.sessions() as session:
        assert await session.get(ApiKey, key_id) is None
        for model in (Grant, Budget):
            left = select(func.count()).select_from(model).where(model.subject_id.in_([user_id, key_id]))
            assert await session.scalar(left) == 0, model
        members = select(func.count()).select_from(Membership).where(Membership.user_id == user_id)
        assert await session.scalar(members) == 0
    deleted = (await events_of(admin_api, user["id"]))[-1]
    assert deleted.action == "user.deleted"
    assert deleted.before is not None
    assert deleted.before["keys"] == [key["id"]]


async def test_tenant_admin_manages_only_its_members(admin_api: AdminApi, admin: httpx.AsyncClient) -> None:
    tenant_id, slug, tadmin_secret = await new_tenant(admin_api)
    _, other_slug, _ = await new_tenant(admin_api)
    outsider = (await admin.post("/api/users", json={"email": email(), "tenant": other_slug})).json()
    shared = (await admin.post("/api/users", json={"email": email(), "tenant": other_slug})).json()
    assert (await admin.put(f"/api/tenants/{slug}/members/{shared['id']}", json={})).status_code == 200

    async with admin_api.client(key=tadmin_secret) as tadmin:
        made = await tadmin.post("/api/users", json={"email": email(), "display_name": "new hire"})
        assert made.status_code == 201, made.text
        assert made.json()["memberships"] == [{"tenant_id": str(tenant_id), "role": "member"}]
        assert (
            await tadmin.post("/api/users", json={"email": email(), "tenant": other_slug})
        ).status_code == 403
        assert (
            await tadmin.post("/api/users", json={"email": email(), "role": "operator"})
        ).status_code == 403

        listed = {u["id"] for u in (await tadmin.get("/api/users", params={"limit": 1000})).json()["items"]}
        assert listed == {made.json()["id"], shared["id"]}
        assert (await tadmin.get("/api/users", params={"tenant": other_slug})).status_code == 403
        assert (await tadmin.get(f"/api/users/{outsider['id']}")).status_code == 404
        assert (
            await tadmin.patch(f"/api/users/{outsider['email']}", json={"display_name": "x"})
        ).status_code == 404
        assert (await tadmin.delete(f"/api/users/{outsider['id']}")).status_code == 404
        shared_view = (await tadmin.get(f"/api/users/{shared['id']}")).json()
        assert shared_view["memberships"] == [{"tenant_id": str(tenant_id), "role": "member"}]

        assert (
            await tadmin.patch(f"/api/users/{made.json()['id']}", json={"role": "admin"})
        ).status_code == 403
        renamed = await tadmin.patch(f"/api/users/{made.json()['id']}", json={"display_name": "Grace"})
        assert renamed.status_code == 200
        assert (await tadmin.delete(f"/api/users/{shared['id']}")).status_code == 403  # in another tenant too
        assert (await tadmin.delete(f"/api/tenants/{slug}/members/{shared['id']}")).status_code == 204
        assert (await tadmin.delete(f"/api/users/{made.json()['id']}")).status_code == 204

        assert (await tadmin.get(f"/api/tenants/{other_slug}/members")).status_code == 404
        assert (
            await tadmin.put(f"/api/tenants/{other_slug}/members/{outsider['id']}", json={})
        ).status_code == 404
        assert (await tadmin.get(f"/api/tenants/{slug}/members")).status_code == 200

    assert (await admin.get(f"/api/users/{shared['id']}")).status_code == 200


async def test_only_an_admin_sets_the_global_role(admin_api: AdminApi, admin: httpx.AsyncClient) -> None:
    user = (await admin.post("/api/users", json={"email": email(), "role": "operator"})).json()
    assert user["role"] == "operator"
    promoted = await admin.patch(f"/api/users/{user['id']}", json={"role": "auditor"})
    assert promoted.status_code == 200
    assert promoted.json()["role"] == "auditor"
    async with admin_api.client("viewer") as viewer:
        assert (await viewer.patch(f"/api/users/{user['id']}", json={"role": "admin"})).status_code == 403
        assert (await viewer.get(f"/api/users/{user['id']}")).status_code == 200
    tenant_id, slug, tadmin_secret = await new_tenant(admin_api)
    assert (await admin.put(f"/api/tenants/{slug}/members/{user['id']}", json={})).status_code == 200
    async with admin_api.client(key=tadmin_secret) as tadmin:
        # a tenant admin leaves people with a global role alone
        assert (await tadmin.patch(f"/api/users/{user['id']}", json={"role": "none"})).status_code == 403
        assert (await tadmin.patch(f"/api/users/{user['id']}", json={"display_name": "x"})).status_code == 403
    events = await events_of(admin_api, user["id"])
    assert [e.action for e in events] == ["user.created", "user.updated"]
    assert tenant_id is not None


async def test_disabling_a_user_stops_its_keys_at_once(admin_api: AdminApi, admin: httpx.AsyncClient) -> None:
    _, slug, _ = await new_tenant(admin_api)
    user = (await admin.post("/api/users", json={"email": email(), "tenant": slug})).json()
    key = (await admin.post("/api/keys", json={"tenant": slug, "user": user["id"]})).json()
    assert await proxy_status(admin_api, key["key"]) == 200
    assert (await admin.patch(f"/api/users/{user['id']}", json={"status": "disabled"})).status_code == 200
    assert await proxy_status(admin_api, key["key"]) == 403
    assert (
        await admin.patch(f"/api/users/{user['id']}", json={"status": "active", "rpm_limit": 9})
    ).status_code == 200
    assert await proxy_status(admin_api, key["key"]) == 200
