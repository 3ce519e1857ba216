"""``portal tenants|users|keys|models``: the management commands on the test database (both backends).

Most commands run in-process through Click's runner (the real command, its real transaction on the
real database); the exit statuses, the one-line errors and the effects on a running server are checked
with the real ``portal`` command in a subprocess. Every change must be in the audit log, by the actor
``portal <command>``, with before and after values.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.app import create_app
from portal.cli import main
from portal.db.models import (
    ApiKey,
    AuditEvent,
    Deployment,
    Grant,
    Membership,
    Model,
    SubjectType,
    Tenant,
    User,
)
from tests.conftest import REDIS_URL, TEST_SECRET, make_settings
from tests.proxy.conftest import serve

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("clean_env")


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def _invoke(database_url: str, args: tuple[str, ...], env: dict[str, str]) -> Run:
    result = CliRunner().invoke(
        main,
        list(args),
        env={"PORTAL_DATABASE_URL": database_url, "PORTAL_SECRET_KEY": TEST_SECRET, **env},
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Run(result.exit_code, result.stdout, result.stderr)


async def cli(database_url: str, *args: str, **env: str) -> Run:
    """Run ``portal ARGS`` in-process (in a thread: the command runs its own event loop)."""
    return await asyncio.to_thread(_invoke, database_url, args, env)


async def portal(database_url: str, *args: str, **env: str) -> Run:
    """Run the real ``portal`` command in a subprocess."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "portal",
        *args,
        cwd=ROOT,
        env={**base, "PORTAL_DATABASE_URL": database_url, "PORTAL_SECRET_KEY": TEST_SECRET, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


async def events(sessions: async_sessionmaker[AsyncSession], target_id: str) -> list[AuditEvent]:
    async with sessions() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.target_id == target_id).order_by(AuditEvent.id)
        )
        return list(rows.all())


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_tenants(database_url: str, sessions: async_sessionmaker[AsyncSession]) -> None:
    slug = name("cli")
    created = await cli(
        database_url, "tenants", "create", slug, "--name", "CLI team", "--rpm-limit", "60", "--json"
    )
    assert created.code == 0, created.err
    tenant = created.json()
    assert tenant["slug"] == slug
    assert tenant["rpm_limit"] == 60
    assert tenant["spend_total"] == "0"

    shown = await cli(database_url, "tenants", "get", slug)
    assert shown.code == 0
    lines = dict(line.split(None, 1) for line in shown.out.splitlines())
    assert lines["slug"] == slug
    assert lines["name"] == "CLI team"
    assert lines["rpm_limit"] == "60"

    listed = await cli(database_url, "tenants", "list", "--search", slug, "--json")
    assert [t["id"] for t in listed.json()["items"]] == [tenant["id"]]
    assert listed.json()["next_cursor"] is None
    table = await cli(database_url, "tenants", "list", "--search", slug)
    assert table.out.splitlines()[0].split()[:3] == ["ID", "SLUG", "NAME"]
    assert slug in table.out.splitlines()[1]

    changed = await cli(
        database_url, "tenants", "update", slug, "--status", "suspended", "--rpm-limit", "none", "--json"
    )
    assert changed.code == 0, changed.err
    assert changed.json()["status"] == "suspended"
    assert changed.json()["rpm_limit"] is None

    refused = await cli(database_url, "tenants", "delete", slug)
    assert refused.code == 1  # no --yes and no answer to the question: nothing is deleted
    assert (await cli(database_url, "tenants", "delete", slug, "--yes")).code == 0
    gone = await cli(database_url, "tenants", "get", slug)
    assert gone.code == 1
    assert gone.err.strip() == f"portal: tenant {slug} does not exist"
    assert gone.out == ""

    trail = await events(sessions, tenant["id"])
    assert [e.action for e in trail] == ["tenant.created", "tenant.suspended", "tenant.deleted"]
    assert {e.actor_type for e in trail} == {"cli"}
    assert [e.actor_label for e in trail] == [
        "portal tenants create",
        "portal tenants update",
        "portal tenants delete",
    ]
    assert trail[1].before is not None
    assert trail[1].before["rpm_limit"] == 60
    assert trail[1].after is not None
    assert trail[1].after["rpm_limit"] is None


async def test_users_and_memberships(database_url: str, sessions: async_sessionmaker[AsyncSession]) -> None:
    slug = name("team")
    assert (await cli(database_url, "tenants", "create", slug)).code == 0
    email = f"{name('ada')}@example.com"
    created = await cli(
        database_url, "users", "create", "--email", email, "--name", "Ada", "--tenant", slug, "--json"
    )
    assert created.code == 0, created.err
    user = created.json()
    assert user["email"] == email
    assert [(m["tenant"], m["role"]) for m in user["memberships"]] == [(slug, "member")]
    assert "password_hash" not in user

    members = await cli(database_url, "users", "list", "--tenant", slug, "--json")
    assert [u["id"] for u in members.json()["items"]] == [user["id"]]

    promoted = await cli(database_url, "users", "add-member", email, slug, "--role", "tenant_admin", "--json")
    assert [m["role"] for m in promoted.json()["memberships"]] == ["tenant_admin"]
    disabled = await cli(database_url, "users", "update", user["id"], "--status", "disabled", "--json")
    assert disabled.json()["status"] == "disabled"
    taken = await cli(database_url, "users", "create", "--email", email)
    assert taken.code == 1
    assert "already exists" in taken.err
    assert (await cli(database_url, "users", "remove-member", email, slug)).code == 0
    assert (await cli(database_url, "users", "delete", email, "--yes")).code == 0

    async with sessions() as session:
        assert await session.get(User, uuid.UUID(user["id"])) is None
        left = await session.scalars(select(Membership).where(Membership.user_id == uuid.UUID(user["id"])))
        assert left.all() == []
    trail = await events(sessions, user["id"])
    assert [e.action for e in trail] == ["user.created", "user.updated", "user.deleted"]
    assert trail[1].after is not None
    assert trail[1].after["status"] == "disabled"


async def test_keys(database_url: str, sessions: async_sessionmaker[AsyncSession]) -> None:
    slug = name("keys")
    assert (await cli(database_url, "tenants", "create", slug, "--rpm-limit", "100")).code == 0
    created = await cli(
        database_url,
        "keys",
        "create",
        "--tenant",
        slug,
        "--alias",
        "ci key",
        "--model",
        "gpt-*",
        "--rpm-limit",
        "5",
        "--metadata",
        '{"team": "ci"}',
        "--json",
    )
    assert created.code == 0, created.err
    key = created.json()
    secret = key["secret"]
    assert key["models"] == ["gpt-*"]
    assert key["metadata"] == {"team": "ci"}
    assert "key_hash" not in key
    async with sessions() as session:
        row = await session.get(ApiKey, uuid.UUID(key["id"]))
        assert row is not None
        assert row.key_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert row.source == "cli"
        grants = (
            await session.scalars(
                select(Grant.model_pattern).where(
                    Grant.subject_type == SubjectType.KEY, Grant.subject_id == row.id
                )
            )
        ).all()
        assert grants == ["gpt-*"]

    by_secret = await cli(database_url, "keys", "get", secret, "--json")
    assert by_secret.json()["id"] == key["id"]
    assert secret not in by_secret.out
    too_high = await cli(database_url, "keys", "update", key["id"], "--rpm-limit", "500")
    assert too_high.code == 1
    assert "rpm_limit" in too_high.err
    updated = await cli(
        database_url, "keys", "update", key["id"], "--alias", "renamed", "--rpm-limit", "none", "--json"
    )
    assert updated.json()["alias"] == "renamed"
    assert updated.json()["rpm_limit"] is None
    assert (await cli(database_url, "keys", "block", key["id"], "--json")).json()["status"] == "blocked"
    blocked = await cli(database_url, "keys", "list", "--tenant", slug, "--status", "blocked", "--json")
    assert [k["id"] for k in blocked.json()["items"]] == [key["id"]]
    assert (await cli(database_url, "keys", "unblock", key["id"], "--json")).json()["status"] == "active"

    before = time.time()
    rotated = await cli(database_url, "keys", "rotate", key["id"], "--grace-period", "60", "--json")
    assert rotated.code == 0, rotated.err
    new = rotated.json()
    assert new["secret"] != secret
    assert new["replaces"] == key["id"]
    assert new["models"] == ["gpt-*"]
    assert new["alias"] == "renamed"
    async with sessions() as session:
        old = await session.get(ApiKey, uuid.UUID(key["id"]))
        assert old is not None
        assert str(old.replaced_by_id) == new["id"]
        assert old.expires_at is not None
        assert before + 50 < old.expires_at.timestamp() < time.time() + 70

    assert (await cli(database_url, "keys", "revoke", new["id"])).code == 0
    final = await cli(database_url, "keys", "unblock", new["id"])
    assert final.code == 1
    assert "revoked" in final.err
    assert (await cli(database_url, "keys", "delete", key["id"], "--yes")).code == 0
    async with sessions() as session:
        assert await session.get(ApiKey, uuid.UUID(key["id"])) is None

    trail = await events(sessions, key["id"])
    assert [e.action for e in trail] == [
        "key.created",
        "grant.replaced",
        "key.updated",
        "key.blocked",
        "key.unblocked",
        "key.rotated",
        "key.deleted",
    ]
    assert {e.actor_type for e in trail} == {"cli"}
    assert trail[1].after == {"grants": [["gpt-*", "*"]]}
    assert trail[2].before is not None
    assert trail[2].before["alias"] == "ci key"
    assert trail[2].after is not None
    assert trail[2].after["alias"] == "renamed"
    for event in trail:
        assert secret not in json.dumps([event.before, event.after])
    revoked = await events(sessions, new["id"])
    assert [e.action for e in revoked] == ["key.created", "key.revoked"]


async def test_models_and_deployments(
    database_url: str, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    model = name("m")
    created = await cli(
        database_url,
        "models",
        "create",
        model,
        "--provider",
        "mock",
        "--upstream-model",
        "mock-1",
        "--input-price",
        "0.15",
        "--output-price",
        "0.60",
        "--json",
    )
    assert created.code == 0, created.err
    view = created.json()
    assert view["source"] == "db"
    (first,) = view["deployments"]
    assert (first["provider"], first["upstream_model"]) == ("mock", "mock-1")
    assert (first["input_price_per_mtok"], first["output_price_per_mtok"]) == ("0.15", "0.6")

    added = await cli(
        database_url,
        "models",
        "deployments",
        "add",
        model,
        "--provider",
        "openai",
        "--upstream-model",
        "gpt-4o-mini",
        "--api-base",
        "https://api.openai.com/v1",
        "--credential-ref",
        "env:OPENAI_API_KEY",
        "--weight",
        "3",
        "--json",
    )
    assert added.code == 0, added.err
    second = added.json()
    listed = await cli(database_url, "models", "deployments", "list", model, "--json")
    assert [d["id"] for d in listed.json()["items"]] == [first["id"], second["id"]]
    changed = await cli(
        database_url, "models", "deployments", "update", second["id"], "--api-base", "none", "--json"
    )
    assert changed.json()["api_base"] is None
    bad = await cli(database_url, "models", "update", model, "--fallback", "no-such-model")
    assert bad.code == 1
    assert "no-such-model" in bad.err
    renamed = await cli(database_url, "models", "update", model, "--description", "CLI model", "--json")
    assert renamed.json()["description"] == "CLI model"
    assert (await cli(database_url, "models", "deployments", "remove", second["id"])).code == 0
    table = await cli(database_url, "models", "list", "--search", model)
    assert model in table.out
    assert (await cli(database_url, "models", "delete", model, "--yes")).code == 0
    async with sessions() as session:
        assert await session.scalar(select(Model).where(Model.name == model)) is None
        assert await session.get(Deployment, uuid.UUID(first["id"])) is None
    trail = await events(sessions, view["id"])
    assert [e.action for e in trail] == ["model.created", "model.updated", "model.deleted"]
    assert [e.action for e in await events(sessions, second["id"])] == [
        "deployment.created",
        "deployment.updated",
        "deployment.deleted",
    ]

    config = tmp_path / "portal.yaml"
    config.write_text("models:\n  - name: from-file\n    deployments:\n      - {provider: mock, model: m}\n")
    listed_all = await cli(database_url, "models", "list", "--json", PORTAL_CONFIG=str(config))
    from_file = [m for m in listed_all.json()["items"] if m["name"] == "from-file"]
    assert [m["source"] for m in from_file] == ["config"]
    read_only = await cli(database_url, "models", "delete", "from-file", "--yes", PORTAL_CONFIG=str(config))
    assert read_only.code == 1
    assert "read-only" in read_only.err


async def test_real_command_exit_statuses(database_url: str, tmp_path: Path) -> None:
    slug = name("sub")
    made = await portal(database_url, "tenants", "create", slug, "--json")
    assert made.code == 0, made.err
    assert json.loads(made.out)["slug"] == slug

    for run, status in (
        (await portal(database_url, "tenants", "create", slug), 1),
        (await portal(database_url, "keys", "get", str(uuid.uuid4())), 1),
        (await portal(database_url, "tenants", "create", "Not A Slug"), 1),
        (await portal(database_url, "keys", "list", "--bogus"), 2),
        (await portal(database_url, "keys", "create", "--rpm-limit", "zero"), 2),
        (await portal(database_url, "keys", "list", "--after", "not-a-cursor"), 2),
    ):
        assert run.code == status, (run.code, run.err)
        assert "Traceback" not in run.err
        assert run.out == ""
    duplicate = await portal(database_url, "tenants", "create", slug)
    assert duplicate.err.strip() == f"portal: tenant {slug!r} already exists"

    down = await portal("postgresql://portal@127.0.0.1:9/nowhere", "tenants", "list")
    assert down.code == 1
    assert down.err.startswith("portal: database error")
    assert len(down.err.strip().splitlines()) == 1
    assert "Traceback" not in down.err
    bad_config = await portal("nonsense", "tenants", "list")
    assert bad_config.code == 2
    assert "PORTAL_DATABASE_URL" in bad_config.err


@dataclass
class Server:
    url: str
    app: Any


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[Server]:
    """A running server that hears changes over Redis (``key_cache_ttl_s`` far longer than the test)."""
    models = [{"name": "cli-mock", "deployments": [{"provider": "mock", "model": "mock-1"}]}]
    settings = make_settings(
        database_url, models=models, redis_url=REDIS_URL, key_cache_ttl_s=600, catalog_refresh_s=600
    )
    app = create_app(settings)
    url, uvicorn_server, task = await serve(app)
    try:
        yield Server(url, app)
    finally:
        uvicorn_server.should_exit = True
        await task


async def _status_soon(client: httpx.AsyncClient, body: dict[str, Any], wanted: int) -> int:
    """The proxy's answer, retried for up to 3 s until it is ``wanted`` (pub/sub is asynchronous)."""
    status = 0
    for _ in range(30):
        status = (await client.post("/v1/chat/completions", json=body)).status_code
        if status == wanted:
            break
        await asyncio.sleep(0.1)
    return status


async def test_changes_reach_a_running_server(server: Server, database_url: str) -> None:
    env = {"PORTAL_REDIS_URL": REDIS_URL}
    created = await portal(database_url, "keys", "create", "--model", "*", "--json", **env)
    assert created.code == 0, created.err
    secret = json.loads(created.out)["secret"]
    chat = {"model": "cli-mock", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {secret}"}, trust_env=False, timeout=30
    ) as client:
        assert (await client.post("/v1/chat/completions", json=chat)).status_code == 200  # now cached
        assert (await portal(database_url, "keys", "block", secret, **env)).code == 0
        assert await _status_soon(client, chat, 401) == 401
        assert (await portal(database_url, "keys", "unblock", secret, **env)).code == 0
        assert await _status_soon(client, chat, 200) == 200

        model = name("cli-new")
        made = await portal(database_url, "models", "create", model, "--provider", "mock", **env)
        assert made.code == 0, made.err
        assert await _status_soon(client, {**chat, "model": model}, 200) == 200


async def test_tenant_table_lists_every_page(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    marker = uuid.uuid4().hex[:6]
    for i in range(3):
        assert (await cli(database_url, "tenants", "create", f"pg-{marker}-{i}")).code == 0
    seen: list[str] = []
    after: list[str] = []
    while True:
        page = await cli(
            database_url, "tenants", "list", "--search", marker, "--limit", "2", *after, "--json"
        )
        seen += [t["slug"] for t in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
        after = ["--after", cursor]
    assert seen == [f"pg-{marker}-{i}" for i in range(3)]
    table = await cli(database_url, "tenants", "list", "--search", marker, "--limit", "2")
    assert "--after" in table.err
    async with sessions() as session:
        count = len((await session.scalars(select(Tenant).where(Tenant.slug.like(f"pg-{marker}-%")))).all())
    assert count == 3


async def test_tenant_payload_logging_flag(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    slug = name("payloads")
    created = await cli(database_url, "tenants", "create", slug, "--json")
    assert created.json()["log_prompts"] is False
    on = await cli(database_url, "tenants", "update", slug, "--log-payloads", "--json")
    assert on.code == 0, on.err
    assert on.json()["log_prompts"] is True
    off = await cli(database_url, "tenants", "update", slug, "--no-log-prompts", "--json")
    assert off.json()["log_prompts"] is False
    trail = await events(sessions, created.json()["id"])
    assert [(e.before or {}).get("log_prompts") for e in trail[1:]] == [False, True]
    assert [(e.after or {}).get("log_prompts") for e in trail[1:]] == [True, False]
