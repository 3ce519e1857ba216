"""``/api/grants``: add, list, delete and replace grants; the proxy's ``/v1/models`` follows at once;
validation (422), unknown subjects and grants (404), tenant-admin scoping (403/404) and the audit trail."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select

from portal.db.models import AuditEvent, Membership, MembershipRole, User
from portal.keys.service import create_key
from portal.tenants.service import create_tenant
from tests.api.conftest import ACTOR, AdminApi


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def tenant_with_key(api: AdminApi, tenant_id: uuid.UUID | None = None) -> tuple[str, str, str]:
    """A proxy key (in a new tenant unless ``tenant_id``); returns (tenant id, key id, secret)."""
    async with api.sessions() as session, session.begin():
        if tenant_id is None:
            tenant_id = (await create_tenant(session, ACTOR, slug=unique("g"))).id
        new = await create_key(session, ACTOR, tenant_id=tenant_id, alias="grant test")
    return str(tenant_id), str(new.key.id), new.secret


async def member(api: AdminApi, tenant_id: uuid.UUID | str | None) -> str:
    """A user, a member of ``tenant_id`` when given; returns its id."""
    async with api.sessions() as session, session.begin():
        user = User(email=f"{unique('u')}@example.com", display_name="member")
        session.add(user)
        await session.flush()
        if tenant_id is not None:
            session.add(
                Membership(user_id=user.id, tenant_id=uuid.UUID(str(tenant_id)), role=MembershipRole.MEMBER)
            )
    return str(user.id)


async def mock_model(admin: httpx.AsyncClient, name: str | None = None, **deployment: Any) -> dict[str, Any]:
    """A model served by the offline mock provider, created through the API; returns the model view."""
    name = name or unique("m")
    created = await admin.post("/api/models", json={"name": name})
    assert created.status_code == 201, created.text
    dep = await admin.post(
        f"/api/models/{name}/deployments",
        json={
            "provider": "mock",
            "upstream_model": "mock-1",
            "input_price_per_mtok": "1",
            "output_price_per_mtok": "2",
            **deployment,
        },
    )
    assert dep.status_code == 201, dep.text
    model = (await admin.get(f"/api/models/{name}")).json()
    assert [d["id"] for d in model["deployments"]] == [dep.json()["id"]]
    return dict(model)


async def visible_models(api: AdminApi, secret: str) -> set[str]:
    async with httpx.AsyncClient(base_url=api.url, trust_env=False, timeout=30) as proxy:
        listed = await proxy.get("/v1/models", headers={"Authorization": f"Bearer {secret}"})
    assert listed.status_code == 200, listed.text
    return {m["id"] for m in listed.json()["data"]}


async def events_for(api: AdminApi, *target_ids: str) -> list[AuditEvent]:
    async with api.sessions() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.target_id.in_(target_ids)).order_by(AuditEvent.id)
        )
        return list(rows.all())


async def test_grant_changes_reach_v1_models_at_once(admin_api: AdminApi, admin: httpx.AsyncClient) -> None:
    first, second = (await mock_model(admin))["name"], (await mock_model(admin))["name"]
    tenant_id, key_id, secret = await tenant_with_key(admin_api)
    assert {first, second} & await visible_models(admin_api, secret) == set()

    added = await admin.post(
        "/api/grants", json={"subject_type": "tenant", "subject_id": tenant_id, "model_pattern": first}
    )
    assert added.status_code == 201, added.text
    grant = added.json()
    assert grant["subject_type"] == "tenant"
    assert grant["subject_id"] == tenant_id
    assert grant["provider_pattern"] == "*"
    assert {first, second} & await visible_models(admin_api, secret) == {first}

    again = await admin.post(
        "/api/grants", json={"subject_type": "tenant", "subject_id": tenant_id, "model_pattern": first}
    )
    assert again.json()["id"] == grant["id"], "adding an identical grant is idempotent"

    replaced = await admin.put(
        f"/api/grants/tenant/{tenant_id}",
        json={"grants": [{"model_pattern": second}, {"model_pattern": "zz-*", "provider_pattern": "mock"}]},
    )
    assert replaced.status_code == 200, replaced.text
    assert [(g["model_pattern"], g["provider_pattern"]) for g in replaced.json()["grants"]] == [
        (second, "*"),
        ("zz-*", "mock"),
    ]
    assert {first, second} & await visible_models(admin_api, secret) == {second}

    key_grant = await admin.post(
        "/api/grants",
        json={
            "subject_type": "key",
            "subject_id": key_id,
            "model_pattern": first,
            "provider_pattern": "mock",
        },
    )
    assert key_grant.status_code == 201
    assert {first, second} & await visible_models(admin_api, secret) == set(), "a key grant only narrows"
    assert (await admin.delete(f"/api/grants/{key_grant.json()['id']}")).status_code == 204
    assert {first, second} & await visible_models(admin_api, secret) == {second}

    listed = (
        await admin.get("/api/grants", params={"subject_type": "tenant", "subject_id": tenant_id})
    ).json()
    assert [g["model_pattern"] for g in listed["items"]] == [second, "zz-*"]
    by_type = (await admin.get("/api/grants", params={"subject_type": "key"})).json()["items"]
    assert all(g["subject_type"] == "key" for g in by_type)
    one = await admin.get(f"/api/grants/{listed['items'][0]['id']}")
    assert one.json() == listed["items"][0]

    cleared = await admin.put(f"/api/grants/tenant/{tenant_id}", json={"grants": []})
    assert cleared.json()["grants"] == []
    assert {first, second} & await visible_models(admin_api, secret) == set()

    events = await events_for(admin_api, grant["id"], key_grant.json()["id"], tenant_id)
    actions = [e.action for e in events if e.action.startswith("grant.")]
    assert actions == ["grant.created", "grant.replaced", "grant.created", "grant.deleted", "grant.replaced"]
    replaced_event = next(e for e in events if e.action == "grant.replaced")
    assert replaced_event.before == {"grants": [[first, "*"]]}
    assert replaced_event.after == {"grants": [[second, "*"], ["zz-*", "mock"]]}
    assert str(replaced_event.tenant_id) == tenant_id
    deleted = next(e for e in events if e.action == "grant.deleted")
    assert deleted.before is not None
    assert deleted.before["model_pattern"] == first


async def test_validation_unknown_subjects_and_grants(admin_api: AdminApi, admin: httpx.AsyncClient) -> None:
    tenant_id, key_id, _ = await tenant_with_key(admin_api)

    async def add(**body: Any) -> httpx.Response:
        return await admin.post("/api/grants", json={"subject_type": "key", "subject_id": key_id, **body})

    bad_glob = await add(model_pattern="gpt-[4")
    assert bad_glob.status_code == 422
    assert "model_pattern" in bad_glob.json()["errors"]
    spaced = await add(model_pattern="gpt 4")
    assert spaced.status_code == 422
    no_provider = await add(provider_pattern="nosuchprovider")
    assert no_provider.status_code == 422
    assert "provider_pattern" in no_provider.json()["errors"]
    empty = await add(model_pattern="")
    assert empty.status_code == 422
    wrong_type = await admin.post("/api/grants", json={"subject_type": "team", "subject_id": key_id})
    assert wrong_type.status_code == 422
    assert "subject_type" in wrong_type.json()["errors"]
    typo = await add(model_pattrn="*")
    assert typo.status_code == 422

    missing = await admin.post("/api/grants", json={"subject_type": "key", "subject_id": str(uuid.uuid4())})
    assert missing.status_code == 404
    assert (
        await admin.post("/api/grants", json={"subject_type": "user", "subject_id": "nobody"})
    ).status_code == 404
    by_slug = await admin.get(
        "/api/grants", params={"subject_type": "tenant", "subject_id": "no-such-tenant"}
    )
    assert by_slug.status_code == 404
    assert (await admin.get("/api/grants", params={"subject_id": tenant_id})).status_code == 422
    assert (await admin.get("/api/grants", params={"subject_type": "nope"})).status_code == 422

    assert (await admin.get(f"/api/grants/{uuid.uuid4()}")).status_code == 404
    assert (await admin.get("/api/grants/not-an-id")).status_code == 404
    assert (await admin.delete(f"/api/grants/{uuid.uuid4()}")).status_code == 404
    bad_set = await admin.put(
        f"/api/grants/key/{key_id}", json={"grants": [{"model_pattern": "ok"}, {"model_pattern": "[x"}]}
    )
    assert bad_set.status_code == 422
    assert "grants[1].model_pattern" in bad_set.json()["errors"]
    assert (await admin.put(f"/api/grants/key/{uuid.uuid4()}", json={"grants": []})).status_code == 404
    assert (await admin.put(f"/api/grants/group/{key_id}", json={"grants": []})).status_code == 422

    async with admin_api.client("viewer") as viewer:
        assert (await viewer.get("/api/grants")).status_code == 200
        assert (
            await viewer.post("/api/grants", json={"subject_type": "key", "subject_id": key_id})
        ).status_code == 403


async def test_tenant_admin_manages_its_keys_and_users_only(
    admin_api: AdminApi, admin: httpx.AsyncClient
) -> None:
    home = str(admin_api.tenant_id)
    _, own_key, _ = await tenant_with_key(admin_api, admin_api.tenant_id)
    own_user = await member(admin_api, admin_api.tenant_id)
    other_tenant, other_key, _ = await tenant_with_key(admin_api)
    stranger = await member(admin_api, uuid.UUID(other_tenant))
    foreign = await admin.post("/api/grants", json={"subject_type": "key", "subject_id": other_key})
    assert foreign.status_code == 201
    tenant_grant = await admin.post("/api/grants", json={"subject_type": "tenant", "subject_id": home})
    assert tenant_grant.status_code == 201

    async with admin_api.client("tenant_admin") as tadmin:
        for subject_type, subject_id in (("key", own_key), ("user", own_user)):
            made = await tadmin.post(
                "/api/grants",
                json={"subject_type": subject_type, "subject_id": subject_id, "model_pattern": "m-*"},
            )
            assert made.status_code == 201, made.text
        replaced = await tadmin.put(f"/api/grants/key/{own_key}", json={"grants": [{"model_pattern": "m-1"}]})
        assert replaced.status_code == 200

        widen = await tadmin.post("/api/grants", json={"subject_type": "tenant", "subject_id": home})
        assert widen.status_code == 403
        assert (await tadmin.put(f"/api/grants/tenant/{home}", json={"grants": []})).status_code == 403
        assert (await tadmin.delete(f"/api/grants/{tenant_grant.json()['id']}")).status_code == 403

        for subject_type, subject_id in (("key", other_key), ("user", stranger), ("tenant", other_tenant)):
            response = await tadmin.post(
                "/api/grants", json={"subject_type": subject_type, "subject_id": subject_id}
            )
            assert response.status_code == 404, (subject_type, response.text)
        assert (await tadmin.get(f"/api/grants/{foreign.json()['id']}")).status_code == 404
        assert (await tadmin.delete(f"/api/grants/{foreign.json()['id']}")).status_code == 404
        assert (
            await tadmin.get("/api/grants", params={"subject_type": "key", "subject_id": other_key})
        ).status_code == 404

        listed = (await tadmin.get("/api/grants")).json()["items"]
        subjects = {(g["subject_type"], g["subject_id"]) for g in listed}
        assert ("key", own_key) in subjects
        assert ("user", own_user) in subjects
        assert ("tenant", home) in subjects, "a tenant admin may read its tenant's own grants"
        assert ("key", other_key) not in subjects

    events = await events_for(admin_api, own_key)
    replaced_events = [e for e in events if e.action == "grant.replaced"]
    assert replaced_events
    assert replaced_events[0].actor_type == "admin_key"
    assert str(replaced_events[0].tenant_id) == home
