"""``/api/models``, ``/api/deployments`` and ``/api/credentials``: CRUD with the audit trail, the proxy
serving a model created through the API at once (and stopping when it is disabled), write-only
credentials that really reach the upstream, validation (422), conflicts (409), unknown ids (404),
read-only config-file models, and who may do what."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import select

from portal.app import create_app
from portal.db.models import Credential, SubjectType
from portal.grants.service import add_grant
from portal.keys.service import create_key
from portal.tenants.service import create_tenant
from tests.api.conftest import ACTOR, MASTER_KEY, AdminApi
from tests.api.test_grants import events_for, mock_model, unique
from tests.conftest import make_settings
from tests.fakes.server import FakeUpstream
from tests.proxy.conftest import serve


async def proxy_key(api: AdminApi, model_pattern: str = "*") -> tuple[uuid.UUID, str]:
    """A tenant allowed ``model_pattern`` with a proxy key; returns (tenant id, secret)."""
    async with api.sessions() as session, session.begin():
        tenant = await create_tenant(session, ACTOR, slug=unique("c"))
        await add_grant(
            session, ACTOR, subject_type=SubjectType.TENANT, subject_id=tenant.id, model_pattern=model_pattern
        )
        new = await create_key(session, ACTOR, tenant_id=tenant.id, alias="catalog test")
    return tenant.id, new.secret


async def chat(api: AdminApi, secret: str, model: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=api.url, trust_env=False, timeout=30) as proxy:
        return await proxy.post(
            "/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 20},
            headers={"Authorization": f"Bearer {secret}"},
        )


async def test_model_and_deployment_crud_with_audit(admin_api: AdminApi, admin: httpx.AsyncClient) -> None:
    name = unique("crud")
    created = await admin.post(
        "/api/models",
        json={"name": name, "description": "first", "mode": "chat", "metadata": {"team": "x"}},
    )
    assert created.status_code == 201, created.text
    model = created.json()
    assert model["source"] == "db"
    assert model["enabled"] is True
    assert model["deployments"] == []

    dep = await admin.post(
        f"/api/models/{model['id']}/deployments",
        json={
            "provider": "openai",
            "upstream_model": "gpt-4o-mini",
            "api_base": "https://api.example.com/v1",
            "credential_ref": "env:SOME_KEY",
            "input_price_per_mtok": "0.150",
            "output_price_per_mtok": "0.6",
            "weight": 3,
            "region": "eu",
            "extra": {"note": "x"},
        },
    )
    assert dep.status_code == 201, dep.text
    deployment = dep.json()
    assert deployment["model"] == name
    assert deployment["name"] == f"{name}-openai"
    assert deployment["input_price_per_mtok"] == "0.15"
    assert deployment["output_price_per_mtok"] == "0.6"
    assert deployment["credential_ref"] == "env:SOME_KEY"
    assert deployment["credential"] is None

    by_name = (await admin.get(f"/api/models/{name}")).json()
    assert by_name == (await admin.get(f"/api/models/{model['id']}")).json()
    assert [d["id"] for d in by_name["deployments"]] == [deployment["id"]]

    patched = await admin.patch(
        f"/api/models/{name}", json={"description": "second", "mode": "completion", "fallbacks": []}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["description"] == "second"
    assert patched.json()["mode"] == "completion"

    changed = await admin.patch(
        f"/api/deployments/{deployment['id']}",
        json={"weight": 0, "input_price_per_mtok": None, "api_base": None, "timeout_s": 30},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["weight"] == 0
    assert changed.json()["input_price_per_mtok"] is None
    assert changed.json()["api_base"] is None
    assert (await admin.get(f"/api/deployments/{deployment['id']}")).json() == changed.json()

    listed = (await admin.get("/api/models", params={"search": name})).json()
    assert [m["name"] for m in listed["items"]] == [name]

    assert (await admin.delete(f"/api/deployments/{deployment['id']}")).status_code == 204
    assert (await admin.get(f"/api/deployments/{deployment['id']}")).status_code == 404
    assert (await admin.delete(f"/api/models/{name}")).status_code == 204
    gone = await admin.get(f"/api/models/{name}")
    assert gone.status_code == 404
    assert gone.headers["content-type"].startswith("application/problem+json")

    events = await events_for(admin_api, model["id"], deployment["id"])
    assert [e.action for e in events] == [
        "model.created",
        "deployment.created",
        "model.updated",
        "deployment.updated",
        "deployment.deleted",
        "model.deleted",
    ]
    updated = events[3]
    assert updated.before is not None
    assert updated.after is not None
    assert (updated.before["weight"], updated.after["weight"]) == (3, 0)
    assert {e.actor_type for e in events} == {"admin_key"}


async def test_proxy_serves_a_new_model_at_once_and_stops_when_disabled(
    admin_api: AdminApi, admin: httpx.AsyncClient
) -> None:
    name = unique("live")
    _, secret = await proxy_key(admin_api, model_pattern=name)
    assert (await chat(admin_api, secret, name)).status_code == 404

    model = await mock_model(admin, name)
    deployment_id = model["deployments"][0]["id"]
    served = await chat(admin_api, secret, name)
    assert served.status_code == 200, served.text
    assert served.json()["choices"][0]["message"]["content"].startswith("Mock response to: hello there")

    off = await admin.patch(f"/api/deployments/{deployment_id}", json={"enabled": False})
    assert off.json()["enabled"] is False
    assert (await chat(admin_api, secret, name)).status_code == 503, "a model without deployments"
    assert (await admin.patch(f"/api/deployments/{deployment_id}", json={"enabled": True})).status_code == 200
    assert (await chat(admin_api, secret, name)).status_code == 200

    assert (await admin.patch(f"/api/models/{name}", json={"enabled": False})).status_code == 200
    assert (await chat(admin_api, secret, name)).status_code == 404
    assert (await admin.patch(f"/api/models/{name}", json={"enabled": True})).status_code == 200
    assert (await chat(admin_api, secret, name)).status_code == 200

    assert (await admin.delete(f"/api/models/{name}")).status_code == 204
    assert (await chat(admin_api, secret, name)).status_code == 404


async def test_per_tenant_override_is_used_and_hidden_from_other_tenant_admins(
    admin_api: AdminApi, admin: httpx.AsyncClient
) -> None:
    name = unique("ovr")
    tenant_id, secret = await proxy_key(admin_api, model_pattern=name)
    await mock_model(admin, name)
    override = await admin.post(
        f"/api/models/{name}/deployments",
        json={
            "provider": "mock",
            "upstream_model": "mock-error-500",
            "tenant": str(tenant_id),
            "max_retries": 0,
        },
    )
    assert override.status_code == 201, override.text
    assert override.json()["tenant_id"] == str(tenant_id)
    assert (await chat(admin_api, secret, name)).status_code != 200, "the tenant's override is used"
    _, other_secret = await proxy_key(admin_api, model_pattern=name)
    assert (await chat(admin_api, other_secret, name)).status_code == 200, "others keep the shared deployment"

    async with admin_api.client("tenant_admin") as tadmin:
        seen = (await tadmin.get(f"/api/models/{name}")).json()
        assert override.json()["id"] not in [d["id"] for d in seen["deployments"]]
        assert len(seen["deployments"]) == 1
        assert (await tadmin.get(f"/api/deployments/{override.json()['id']}")).status_code == 404
    assert (await admin.delete(f"/api/deployments/{override.json()['id']}")).status_code == 204
    assert (await chat(admin_api, secret, name)).status_code == 200


async def test_validation_conflicts_and_unknown_ids(admin_api: AdminApi, admin: httpx.AsyncClient) -> None:
    name = unique("val")
    assert (await admin.post("/api/models", json={"name": name})).status_code == 201
    duplicate = await admin.post("/api/models", json={"name": name})
    assert duplicate.status_code == 409
    assert name in duplicate.json()["detail"]

    for body, field in (
        ({"name": "bad name!"}, "name"),
        ({"name": unique("v"), "mode": "image"}, "mode"),
        ({"name": unique("v"), "fallbacks": ["no-such-model"]}, "fallbacks"),
        ({"name": unique("v"), "colour": "red"}, "colour"),
    ):
        response = await admin.post("/api/models", json=body)
        assert response.status_code == 422, (body, response.text)
        problem = response.json()
        assert field in problem.get("errors", {}) or field in problem["detail"], (field, problem)
    assert (await admin.patch(f"/api/models/{name}", json={"fallbacks": [name]})).status_code == 422

    user = unique("fb")
    made = await admin.post("/api/models", json={"name": user, "fallbacks": [name]})
    assert made.status_code == 201, made.text
    blocked = await admin.delete(f"/api/models/{name}")
    assert blocked.status_code == 409
    assert user in blocked.json()["detail"]
    taken = await admin.patch(f"/api/models/{user}", json={"name": name})
    assert taken.status_code == 409

    async def deploy(**body: Any) -> httpx.Response:
        return await admin.post(
            f"/api/models/{name}/deployments", json={"provider": "openai", "upstream_model": "x", **body}
        )

    cases: list[tuple[dict[str, Any], str]] = [
        ({"provider": "acme"}, "provider"),
        ({"api_base": "ftp://nope"}, "api_base"),
        ({"credential": "no-such-credential"}, "credential"),
        ({"credential_ref": "sk-plaintext-secret"}, "credential_ref"),
        ({"credential": "a", "credential_ref": "env:A"}, "credential_ref"),
        ({"tenant": "no-such-tenant"}, "tenant"),
        ({"input_price_per_mtok": "-1"}, "input_price_per_mtok"),
        ({"input_price_per_mtok": 1.5}, "input_price_per_mtok"),
        ({"weight": -1}, "weight"),
        ({"timeout_s": 0}, "timeout_s"),
    ]
    for body, field in cases:
        response = await deploy(**body)
        assert response.status_code == 422, (body, response.text)
        assert field in response.json()["errors"], (field, response.json())
    assert (
        await admin.post(f"/api/models/{name}/deployments", json={"provider": "openai"})
    ).status_code == 422

    assert (await admin.get(f"/api/models/{uuid.uuid4()}")).status_code == 404
    assert (await admin.patch("/api/models/no-such-model", json={"description": "x"})).status_code == 404
    assert (await admin.delete("/api/models/no-such-model")).status_code == 404
    assert (
        await admin.post(
            "/api/models/no-such-model/deployments", json={"provider": "mock", "upstream_model": "m"}
        )
    ).status_code == 404
    assert (await admin.get("/api/deployments/not-a-uuid")).status_code == 404
    assert (await admin.patch(f"/api/deployments/{uuid.uuid4()}", json={"weight": 2})).status_code == 404
    assert (await admin.delete(f"/api/deployments/{uuid.uuid4()}")).status_code == 404
    assert (await admin.get("/api/credentials/no-such-credential")).status_code == 404
    assert (await admin.put("/api/credentials/no-such-credential", json={"secret": "abc"})).status_code == 404
    assert (await admin.delete(f"/api/credentials/{uuid.uuid4()}")).status_code == 404
    assert (await admin.get("/api/models", params={"cursor": "!!"})).status_code == 422
    assert (await admin.get("/api/models", params={"limit": 0})).status_code == 422


async def test_credentials_are_write_only_and_reach_the_upstream(
    admin_api: AdminApi, admin: httpx.AsyncClient, fake_openai: FakeUpstream
) -> None:
    cred_name = unique("openai-cred")
    secret_value = fake_openai.api_key
    created = await admin.post(
        "/api/credentials", json={"name": cred_name, "provider": "openai", "secret": secret_value}
    )
    assert created.status_code == 201, created.text
    credential = created.json()
    assert credential["hint"] == secret_value[-4:]
    assert credential["used_by"] == []
    assert set(credential) == {"id", "name", "provider", "hint", "used_by", "created_at", "updated_at"}
    assert (
        await admin.post("/api/credentials", json={"name": cred_name, "provider": "openai", "secret": "x"})
    ).status_code == 409
    bad = await admin.post(
        "/api/credentials", json={"name": unique("c"), "provider": "nope", "secret": "abc"}
    )
    assert bad.status_code == 422
    assert "provider" in bad.json()["errors"]
    assert (
        await admin.post("/api/credentials", json={"name": unique("c"), "provider": "openai", "secret": ""})
    ).status_code == 422

    async with admin_api.sessions() as session:
        row = await session.scalar(select(Credential).where(Credential.name == cred_name))
        assert row is not None
        assert secret_value.encode() not in row.ciphertext
        assert admin_api.gateway.cipher is not None
        assert admin_api.gateway.cipher.decrypt(row.ciphertext) == secret_value

    name = unique("cred-model")
    _, proxy_secret = await proxy_key(admin_api, model_pattern=name)
    assert (await admin.post("/api/models", json={"name": name})).status_code == 201
    dep = await admin.post(
        f"/api/models/{name}/deployments",
        json={
            "provider": "openai",
            "upstream_model": "gpt-4o-mini",
            "api_base": f"{fake_openai.base_url}/v1",
            "credential": cred_name,
            "max_retries": 0,
        },
    )
    assert dep.status_code == 201, dep.text
    assert dep.json()["credential"] == {"id": credential["id"], "name": cred_name}
    assert (await chat(admin_api, proxy_secret, name)).status_code == 200
    assert fake_openai.last.headers["authorization"] == f"Bearer {secret_value}"

    one = await admin.get(f"/api/credentials/{cred_name}")
    assert one.json()["used_by"] == [dep.json()["id"]]
    listed = await admin.get("/api/credentials")
    for response in (created, one, listed, dep, await admin.get(f"/api/models/{name}")):
        assert secret_value not in response.text
    in_use = await admin.delete(f"/api/credentials/{cred_name}")
    assert in_use.status_code == 409
    assert dep.json()["id"] in in_use.json()["detail"]

    rotated = await admin.put(f"/api/credentials/{credential['id']}", json={"secret": "sk-wrong-secret-9999"})
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["hint"] == "9999"
    assert (await chat(admin_api, proxy_secret, name)).status_code != 200, (
        "the rotated (wrong) secret is used"
    )
    assert (
        await admin.put(f"/api/credentials/{cred_name}", json={"secret": secret_value})
    ).status_code == 200
    assert (await chat(admin_api, proxy_secret, name)).status_code == 200

    swapped = await admin.patch(
        f"/api/deployments/{dep.json()['id']}", json={"credential_ref": "env:UNSET_VAR_X"}
    )
    assert swapped.json()["credential"] is None
    assert swapped.json()["credential_ref"] == "env:UNSET_VAR_X"
    assert (await admin.get(f"/api/credentials/{cred_name}")).json()["used_by"] == []
    assert (await admin.delete(f"/api/credentials/{cred_name}")).status_code == 204

    events = await events_for(admin_api, credential["id"])
    assert [e.action for e in events] == [
        "credential.created",
        "credential.rotated",
        "credential.rotated",
        "credential.deleted",
    ]
    for event in events:
        assert secret_value not in str(event.before) + str(event.after)
        assert "sk-wrong-secret" not in str(event.before) + str(event.after)


async def test_roles_on_the_catalog(admin_api: AdminApi, admin: httpx.AsyncClient) -> None:
    name = (await mock_model(admin))["name"]
    async with admin_api.client("tenant_admin") as tadmin:
        assert (await tadmin.get("/api/models")).status_code == 200
        assert (await tadmin.get(f"/api/models/{name}")).status_code == 200
        assert (await tadmin.post("/api/models", json={"name": unique("t")})).status_code == 403
        assert (await tadmin.patch(f"/api/models/{name}", json={"enabled": False})).status_code == 403
        assert (await tadmin.get("/api/credentials")).status_code == 403
    async with admin_api.client("viewer") as viewer:
        assert (await viewer.get("/api/credentials")).status_code == 200
        assert (await viewer.get(f"/api/models/{name}")).status_code == 200
        assert (
            await viewer.post(
                "/api/credentials", json={"name": unique("c"), "provider": "openai", "secret": "abcd"}
            )
        ).status_code == 403
        assert (await viewer.delete(f"/api/models/{name}")).status_code == 403


async def test_models_paginate_with_a_cursor(admin: httpx.AsyncClient) -> None:
    marker = unique("pg")
    made = [(await admin.post("/api/models", json={"name": f"{marker}-{i}"})).json()["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"search": marker, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await admin.get("/api/models", params=params)).json()
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made


@asynccontextmanager
async def config_app(database_url: str, models: list[dict[str, Any]]) -> AsyncIterator[httpx.AsyncClient]:
    """Another app on the same database, with models declared in its configuration."""
    app = create_app(make_settings(database_url, master_key=MASTER_KEY, models=models))
    url, server, task = await serve(app)
    try:
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, trust_env=False, timeout=30
        ) as client:
            yield client
    finally:
        server.should_exit = True
        await task


async def test_config_file_models_are_listed_read_only(database_url: str) -> None:
    cfg, cred = unique("cfg"), unique("cfg-cred")
    declared = [
        {
            "name": cfg,
            "description": "from the file",
            "deployments": [{"provider": "mock", "model": "mock-1", "api_key": f"credential:{cred}"}],
        }
    ]
    async with config_app(database_url, declared) as api:
        first = (await api.get("/api/models", params={"limit": 1})).json()
        assert [m["name"] for m in first["items"]] == [cfg]
        assert first["items"][0]["source"] == "config"
        assert first["items"][0]["id"] is None
        assert first["items"][0]["deployments"][0]["id"] == f"config:{cfg}:0"
        assert first["items"][0]["deployments"][0]["credential_ref"] == f"credential:{cred}"
        rest = (await api.get("/api/models", params={"limit": 1000, "cursor": first["next_cursor"]})).json()
        assert cfg not in [m["name"] for m in rest["items"]]
        assert all(m["source"] == "db" for m in rest["items"])

        one = await api.get(f"/api/models/{cfg}")
        assert one.status_code == 200
        assert one.json()["description"] == "from the file"
        for response in (
            await api.patch(f"/api/models/{cfg}", json={"description": "x"}),
            await api.delete(f"/api/models/{cfg}"),
            await api.post("/api/models", json={"name": cfg}),
            await api.post(
                f"/api/models/{cfg}/deployments", json={"provider": "mock", "upstream_model": "m"}
            ),
        ):
            assert response.status_code == 409, response.text
            assert "configuration file" in response.json()["detail"]

        with_fallback = await api.post("/api/models", json={"name": unique("db"), "fallbacks": [cfg]})
        assert with_fallback.status_code == 201, with_fallback.text
        stored = await api.post(
            "/api/credentials", json={"name": cred, "provider": "mock", "secret": "s3cr3t-value"}
        )
        assert stored.json()["used_by"] == [f"config:{cfg}:0"]
        assert (await api.delete(f"/api/credentials/{cred}")).status_code == 409
