"""The LLM Server compatible admin API (``/v1/admin/keys``, ``/v1/admin/logs``) against a live server.

The seed's operator workflow runs end to end from the scripts in ``tests/seeds/llmserver`` (the seed's
curl calls, run by bash and curl): seed an admin key with the real ``portal seed-key`` command, check
health, create a key, call the model ``mistral`` (the offline mock provider) with it, read its usage and
the logs, disable, enable, change the role of and revoke keys. Around it: roles (a viewer reads but does
not write, a tenant admin stays in its tenant, nobody raises rights), key references (id, value,
prefix), FastAPI-style errors, audit events with before and after, and that ``/v1/admin/*`` reaches
this router both through the server's fast path and in the bare Litestar app.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal import audit
from portal.app import create_app
from portal.db.models import TENANT_SCOPED_ROLES, AdminRole, ApiKey, AuditEvent, Grant, SubjectType
from portal.keys.secrets import display_prefix
from portal.keys.service import create_key
from portal.tenants.service import create_tenant
from tests.conftest import TEST_SECRET, make_settings, redis_url_for
from tests.proxy.conftest import serve

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "tests" / "seeds" / "llmserver"
ACTOR = audit.Actor(type="test", label="llmserver tests")
MISTRAL = [
    {
        "name": "mistral",
        "deployments": [
            {
                "provider": "mock",
                "model": "mistral",
                "input_price_per_mtok": "1",
                "output_price_per_mtok": "2",
            }
        ],
    }
]
CHAT = {"model": "mistral", "messages": [{"role": "user", "content": "Hello from the LLM Server seed"}]}


@dataclass
class LlmServer:
    """A running server with the model ``mistral`` and admin keys of every role."""

    url: str
    app: Litestar
    sessions: async_sessionmaker[AsyncSession]
    database_url: str
    keys: dict[str, str] = field(default_factory=dict)
    tenant_id: uuid.UUID | None = None

    def client(self, key: str | None) -> httpx.AsyncClient:
        """A client sending ``key`` as ``X-API-Key``, as the seed does."""
        headers = {"X-API-Key": key} if key else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, trust_env=False, timeout=30)

    async def flush(self) -> None:
        await self.app.state.gateway.writer.flush()


@pytest.fixture(scope="module")
async def llm(
    backend: str, database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[LlmServer]:
    settings = make_settings(database_url, models=MISTRAL, redis_url=redis_url_for(backend))
    app = create_app(settings)
    url, server, task = await serve(app)
    running = LlmServer(url=url, app=app, sessions=sessions, database_url=database_url)
    async with sessions() as session, session.begin():
        tenant = await create_tenant(session, ACTOR, slug=f"llms-{uuid.uuid4().hex[:8]}")
        running.tenant_id = tenant.id
        for role in AdminRole:
            new = await create_key(
                session,
                ACTOR,
                role=role,
                alias=f"llmserver {role}",
                tenant_id=tenant.id if role in TENANT_SCOPED_ROLES else None,
            )
            running.keys[role.value] = new.secret
    try:
        yield running
    finally:
        server.should_exit = True
        await task


async def run_script(name: str, **env: str) -> list[Any]:
    """Run a seed script with bash and curl; the JSON documents it printed, in order."""
    base = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG"}}
    process = await asyncio.create_subprocess_exec(
        "bash",
        str(SEEDS / name),
        env={**base, "NO_PROXY": "*", **env},
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return parse_all(out.decode())


def parse_all(text: str) -> list[Any]:
    decoder = json.JSONDecoder()
    docs: list[Any] = []
    at = 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            return docs
        doc, at = decoder.raw_decode(text, at)
        docs.append(doc)


async def events_for(sessions: async_sessionmaker[AsyncSession], key_id: str) -> list[AuditEvent]:
    async with sessions() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.target_id == key_id).order_by(AuditEvent.id)
        )
        return list(rows.all())


async def test_seed_workflow_end_to_end(llm: LlmServer) -> None:
    # 2. Seed an admin key (once per environment), with the real command on the server's database.
    admin_key = f"sk-llmserver-seeded-{uuid.uuid4().hex}"
    process = await asyncio.create_subprocess_exec(
        "bash",
        str(SEEDS / "00_seed_key.sh"),
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")},
            "PORTAL": f"{sys.executable} -m portal",
            "API_KEY": admin_key,
            "PORTAL_DATABASE_URL": llm.database_url,
            "PORTAL_SECRET_KEY": TEST_SECRET,
        },
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert out.decode().strip() == admin_key
    assert "Traceback" not in err.decode()

    # 3. Verify health.
    healthz, readyz = await run_script("01_health.sh", PORTAL_URL=llm.url)
    assert healthz["status"] == "ok"
    assert readyz["status"] == "ready"

    # 7. Manage keys: create (the secret shown once), list.
    (created,) = await run_script("04_create_key.sh", PORTAL_URL=llm.url, ADMIN_KEY=admin_key)
    assert created["label"] == "client-a"
    assert created["role"] == "default"
    assert created["status"] == "active"
    assert created["active"] is True
    user_key, key_id = created["api_key"], created["id"]
    assert user_key == created["key"]
    assert user_key.startswith(created["prefix"].removesuffix("..."))
    (listed,) = await run_script("03_list_keys.sh", PORTAL_URL=llm.url, ADMIN_KEY=admin_key)
    mine = next(k for k in listed if k["id"] == key_id)
    assert mine["label"] == "client-a"
    assert mine["role"] == "default"
    assert "api_key" not in mine
    assert user_key not in json.dumps(listed)
    seeded = [k for k in listed if k["prefix"] == display_prefix(admin_key)]
    assert [k["role"] for k in seeded] == ["admin"]

    # A real proxied call with the new key (LLM Server keys may use every model), twice: cached twice.
    async with llm.client(admin_key) as admin:
        assert (await admin.patch(f"/v1/admin/keys/{created['id']}", json={"cache_enabled": True})).is_success
    async with llm.client(user_key) as user:
        first = await user.post("/v1/chat/completions", json=CHAT)
        assert first.status_code == 200, first.text
        second = await user.post("/v1/chat/completions", json=CHAT)
        assert second.status_code == 200, second.text
        assert second.headers.get("x-portal-cache") == "hit"
    await llm.flush()

    # 5. Check usage for the key.
    (usage,) = await run_script("02_me_usage.sh", PORTAL_URL=llm.url, USER_KEY=user_key)
    await llm.flush()  # the usage call is a request of the key too (endpoint "me.usage")
    for name in ("quota_used", "quota_monthly", "quota_reset_at", "rpm_limit", "rpm_remaining"):
        assert name in usage
    assert usage["key_prefix"] == created["prefix"]

    # 6. Inspect logs: everything, limit=100, model=mistral, cached=true.
    everything, limited, by_model, cached = await run_script(
        "07_logs.sh", PORTAL_URL=llm.url, ADMIN_KEY=admin_key
    )
    ours = [log for log in by_model if log["key_id"] == key_id]
    assert len(ours) == 2
    assert {log["model"] for log in by_model} == {"mistral"}
    assert {log["status_code"] for log in ours} == {200}
    assert [log["cached"] for log in ours] == [True, False]  # newest first
    assert ours[1]["total_tokens"] > 0
    assert ours[1]["cost"] != "0"
    assert ours[1]["provider"] == "mock"
    assert {log["id"] for log in ours} <= {log["id"] for log in everything}
    assert len(limited) <= 100
    assert {log["id"] for log in ours} <= {log["id"] for log in limited}
    assert cached
    assert all(log["cached"] for log in cached)
    assert ours[0]["id"] in {log["id"] for log in cached}

    # The key list now carries its usage summary.
    (listed,) = await run_script("03_list_keys.sh", PORTAL_URL=llm.url, ADMIN_KEY=admin_key)
    summary = next(k for k in listed if k["id"] == key_id)["usage"]
    every_call = [log for log in everything if log["key_id"] == key_id]
    assert {log["endpoint"] for log in every_call} == {"chat.completions", "me.usage"}
    assert summary["requests"] == len(every_call) == 3
    assert summary["total_tokens"] > 0
    assert summary["spend"] != "0"

    # Disable (by prefix), then the proxy refuses the key; enable (by value), then it works again.
    prefix = created["prefix"].removesuffix("...")
    (disabled,) = await run_script(
        "05_update_key.sh", PORTAL_URL=llm.url, ADMIN_KEY=admin_key, KEY=prefix, BODY='{"active": false}'
    )
    assert disabled["status"] == "blocked"
    assert disabled["active"] is False
    async with llm.client(user_key) as user:
        assert (await user.post("/v1/chat/completions", json=CHAT)).status_code == 401
    (enabled,) = await run_script(
        "05_update_key.sh", PORTAL_URL=llm.url, ADMIN_KEY=admin_key, KEY=user_key, BODY='{"active": true}'
    )
    assert enabled["active"] is True
    async with llm.client(user_key) as user:
        assert (await user.get("/v1/me/usage")).status_code == 200

    # Change the role: the key becomes an admin key and may list keys.
    (promoted,) = await run_script(
        "05_update_key.sh",
        PORTAL_URL=llm.url,
        ADMIN_KEY=admin_key,
        KEY=key_id,
        BODY='{"role": "admin"}',
    )
    assert promoted["role"] == "admin"
    async with llm.client(user_key) as user:
        assert (await user.get("/v1/admin/keys")).status_code == 200

    # Revoke: the proxy and the admin API refuse the key at once.
    (revoked,) = await run_script("06_revoke_key.sh", PORTAL_URL=llm.url, ADMIN_KEY=admin_key, KEY=key_id)
    assert revoked["status"] == "revoked"
    assert revoked["revoked_at"] is not None
    async with llm.client(user_key) as user:
        assert (await user.post("/v1/chat/completions", json=CHAT)).status_code == 401
        refused = await user.get("/v1/admin/keys")
        assert refused.status_code == 401
        assert "detail" in refused.json()

    # Every change is in the audit log, by the seeded admin key, with before and after.
    events = await events_for(llm.sessions, key_id)
    actions = [e.action for e in events]
    assert actions == [
        "key.created",
        "key.updated",
        "key.blocked",
        "key.unblocked",
        "key.updated",
        "key.revoked",
    ]
    by_action = {e.action: e for e in events}
    assert {e.actor_type for e in events} == {"admin_key"}
    blocked = by_action["key.blocked"]
    assert blocked.before is not None
    assert blocked.before["status"] == "active"
    assert blocked.after is not None
    assert blocked.after["status"] == "blocked"
    role_change = [e for e in events if e.action == "key.updated"][-1]
    assert role_change.before is not None
    assert role_change.before["role"] is None
    assert role_change.after is not None
    assert role_change.after["role"] == "admin"
    assert by_action["key.revoked"].after is not None
    assert by_action["key.revoked"].after["status"] == "revoked"
    for event in events:
        assert user_key not in json.dumps([event.before, event.after])


async def test_created_key_grants(llm: LlmServer) -> None:
    """A tenantless default key gets ``*``; ``models`` narrows it; a tenant's key follows its tenant."""
    async with llm.client(llm.keys["admin"]) as admin:
        free = (await admin.post("/v1/admin/keys", json={"label": "free"})).json()
        narrow = (await admin.post("/v1/admin/keys", json={"label": "narrow", "models": ["gpt-*"]})).json()
        tenant_key = (await admin.post("/v1/admin/keys", json={"tenant": str(llm.tenant_id)})).json()
    assert tenant_key["tenant_id"] == str(llm.tenant_id)
    async with llm.sessions() as session:
        grants = {
            str(g.subject_id): g.model_pattern
            for g in await session.scalars(select(Grant).where(Grant.subject_type == SubjectType.KEY))
        }
    assert grants[free["id"]] == "*"
    assert grants[narrow["id"]] == "gpt-*"
    assert tenant_key["id"] not in grants
    async with llm.client(free["api_key"]) as client:
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    async with llm.client(narrow["api_key"]) as client:
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 403


async def test_roles(llm: LlmServer) -> None:
    async with llm.client(llm.keys["admin"]) as admin:
        target = (await admin.post("/v1/admin/keys", json={"label": "role target"})).json()
        other = (await admin.post("/v1/admin/keys", json={"label": "other tenant", "role": "viewer"})).json()
    async with llm.client(llm.keys["viewer"]) as viewer:
        assert (await viewer.get("/v1/admin/keys")).status_code == 200
        assert (await viewer.get("/v1/admin/logs", params={"limit": 5})).status_code == 200
        for response in (
            await viewer.post("/v1/admin/keys", json={"label": "nope"}),
            await viewer.patch(f"/v1/admin/keys/{target['id']}", json={"active": False}),
            await viewer.delete(f"/v1/admin/keys/{target['id']}"),
        ):
            assert response.status_code == 403
            assert "may not" in response.json()["detail"]
    async with llm.client(llm.keys["auditor"]) as auditor:
        assert (await auditor.get(f"/v1/admin/keys/{target['id']}")).status_code == 200
        assert (await auditor.post("/v1/admin/keys", json={})).status_code == 403

    async with llm.client(llm.keys["tenant_admin"]) as tadmin:
        own = await tadmin.post("/v1/admin/keys", json={"label": "tenant key"})
        assert own.status_code == 201, own.text
        assert own.json()["tenant_id"] == str(llm.tenant_id)
        listed = (await tadmin.get("/v1/admin/keys")).json()
        assert listed
        assert {k["tenant_id"] for k in listed} == {str(llm.tenant_id)}
        assert (await tadmin.get(f"/v1/admin/keys/{other['id']}")).status_code == 404
        assert (await tadmin.delete(f"/v1/admin/keys/{target['id']}")).status_code == 404
        raise_own = await tadmin.post("/v1/admin/keys", json={"role": "admin"})
        assert raise_own.status_code == 403
        promote = await tadmin.patch(f"/v1/admin/keys/{own.json()['id']}", json={"role": "admin"})
        assert promote.status_code == 403
        logs = (await tadmin.get("/v1/admin/logs")).json()
        assert all(log["tenant_id"] == str(llm.tenant_id) for log in logs)

    async with llm.client(llm.keys["admin"]) as admin:
        own_role = await admin.patch(f"/v1/admin/keys/{llm.keys['admin']}", json={"role": "viewer"})
        assert own_role.status_code == 403
        assert "own role" in own_role.json()["detail"]

    async with llm.client(None) as anonymous:
        missing = await anonymous.get("/v1/admin/keys")
        assert missing.status_code == 401
        assert "detail" in missing.json()
    async with llm.client(target["api_key"]) as proxy_key:
        assert (await proxy_key.get("/v1/admin/keys")).status_code == 403
    async with httpx.AsyncClient(
        base_url=llm.url, headers={"Authorization": f"Bearer {llm.keys['admin']}"}, trust_env=False
    ) as bearer:
        assert (await bearer.get("/v1/admin/keys", params={"limit": 1})).status_code == 200


async def test_key_references_and_errors(llm: LlmServer) -> None:
    async with llm.client(llm.keys["admin"]) as admin:
        made = [
            (await admin.post("/v1/admin/keys", json={"label": f"ref {i}", "role": "viewer"})).json()
            for i in range(2)
        ]
        by_id = await admin.get(f"/v1/admin/keys/{made[0]['id']}")
        by_value = await admin.get(f"/v1/admin/keys/{made[0]['api_key']}")
        by_prefix = await admin.get(f"/v1/admin/keys/{made[0]['prefix']}")
        assert by_id.json() == by_value.json() == by_prefix.json()
        assert by_id.json()["role"] == "viewer"

        # "sk-admin-" is the start of both keys' prefixes: ambiguous.
        ambiguous = await admin.patch("/v1/admin/keys/sk-admin-", json={"label": "x"})
        assert ambiguous.status_code == 409
        assert "use the key id" in ambiguous.json()["detail"]
        unknown = await admin.delete(f"/v1/admin/keys/{uuid.uuid4()}")
        assert unknown.status_code == 404
        assert unknown.json() == {"detail": unknown.json()["detail"]}

        bad_role = await admin.post("/v1/admin/keys", json={"label": "x", "role": "superuser"})
        assert bad_role.status_code == 422
        assert bad_role.json()["detail"][0]["loc"] == ["body", "role"]
        bad_limit = await admin.post("/v1/admin/keys", json={"rpm_limit": 0})
        assert bad_limit.status_code == 422
        assert isinstance(bad_limit.json()["detail"], list)
        bad_status = await admin.patch(f"/v1/admin/keys/{made[1]['id']}", json={"status": "paused"})
        assert bad_status.status_code == 422
        contradiction = await admin.patch(
            f"/v1/admin/keys/{made[1]['id']}", json={"active": True, "status": "disabled"}
        )
        assert contradiction.status_code == 422

        label = await admin.patch(f"/v1/admin/keys/{made[1]['id']}", json={"label": "renamed"})
        assert label.status_code == 200
        assert label.json()["label"] == "renamed"
        assert (await admin.delete(f"/v1/admin/keys/{made[1]['id']}")).status_code == 200
        again = await admin.patch(f"/v1/admin/keys/{made[1]['id']}", json={"active": True})
        assert again.status_code == 409
        assert "revoked" in again.json()["detail"]
        assert (await admin.get("/v1/admin/keys", params={"limit": 0})).status_code == 422

    events = await events_for(llm.sessions, made[1]["id"])
    renamed = next(e for e in events if e.action == "key.updated")
    assert renamed.before is not None
    assert renamed.before["alias"] == "ref 1"
    assert renamed.after is not None
    assert renamed.after["alias"] == "renamed"
    async with llm.sessions() as session:
        row = await session.get(ApiKey, uuid.UUID(made[1]["id"]))
        assert row is not None
        assert row.status == "revoked"


async def test_lists_page_with_a_header(llm: LlmServer) -> None:
    async with llm.client(llm.keys["admin"]) as admin:
        marker = uuid.uuid4().hex[:8]
        made = [
            (await admin.post("/v1/admin/keys", json={"label": f"page-{marker}-{i}"})).json()["id"]
            for i in range(3)
        ]
        seen: list[str] = []
        params: dict[str, Any] = {"search": f"page-{marker}", "limit": 2}
        while True:
            page = await admin.get("/v1/admin/keys", params=params)
            seen += [k["id"] for k in page.json()]
            cursor = page.headers.get("x-next-cursor")
            if cursor is None:
                break
            params["after"] = cursor
        assert seen == made

        caller_key = (await admin.post("/v1/admin/keys", json={})).json()["api_key"]
        async with llm.client(caller_key) as user:
            for _ in range(3):
                assert (await user.post("/v1/chat/completions", json=CHAT)).status_code == 200
        await llm.flush()
        first = await admin.get("/v1/admin/logs", params={"limit": 2})
        assert len(first.json()) == 2
        cursor = first.headers["x-next-cursor"]
        second = await admin.get("/v1/admin/logs", params={"limit": 2, "before_id": cursor})
        assert second.json()
        assert max(log["id"] for log in second.json()) < min(log["id"] for log in first.json())
        failures = await admin.get("/v1/admin/logs", params={"ok": False, "model": "mistral"})
        assert all(log["status_code"] >= 400 for log in failures.json())


async def test_admin_paths_reach_the_router_without_the_fast_path(llm: LlmServer, database_url: str) -> None:
    """In the bare Litestar app (no FastPath), ``/v1/admin/*`` is still routed here, not to the proxy."""
    app = create_app(make_settings(database_url, models=MISTRAL))
    async with AsyncTestClient(app=app) as client:
        anonymous = await client.get("/v1/admin/keys")
        assert anonymous.status_code == 401
        assert "detail" in anonymous.json()
        listed = await client.get("/v1/admin/keys", headers={"X-API-Key": llm.keys["viewer"]})
        assert listed.status_code == 200
        assert isinstance(listed.json(), list)
        logs = await client.get("/v1/admin/logs?limit=1", headers={"X-API-Key": llm.keys["viewer"]})
        assert logs.status_code == 200
        proxy = await client.get("/v1/models")
        assert proxy.status_code == 401
        assert "error" in proxy.json()
    async with llm.client(None) as anonymous_live:
        live = await anonymous_live.get("/v1/models")
        assert live.status_code == 401
        assert "error" in live.json()
