"""COO-LLM compatible admin API (``/admin/v1``) end to end: the seed documents' curl commands, Python and
Terraform examples run as written against a real server (uvicorn, real databases, fake upstreams at the
network edge), provider restrictions on the proxy, roles, COO-LLM style errors and the audit trail.

Seeds: /work/shared/seeds/000_8a7939156532ff46.txt (client management) and 003_4a16fe1a8956e745.txt
(config backup). The snippets live verbatim in tests/seeds/coo/ (each file's header says what was
substituted).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import secrets
import string
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal import audit
from portal.catalog.credentials import create_credential
from portal.catalog.service import create_deployment, create_model
from portal.db.models import ApiKey, AuditEvent, SubjectType
from portal.grants.service import add_grant
from portal.ops.config_export import REDACTED, redact
from tests.api.conftest import AdminApi, running_admin_api
from tests.conftest import TEST_SECRET, make_settings, redis_url_for
from tests.fakes.server import DEFAULT_TEXT, FakeUpstream

SEEDS = Path(__file__).resolve().parents[1] / "seeds" / "coo"
ACTOR = audit.Actor(type="test", label="coo tests")
MASTER_KEY = "sk-coo-master-key-0123456789abcdef"
STATIC_KEY = "sk-static-coo-config-key-000001"
CREDENTIAL_SECRET = "sk-stored-upstream-secret-0000000001"
# Prices per million tokens; the fakes answer 11 prompt and 7 completion tokens.
GPT4_CALL_COST = (11 * 30 + 7 * 60) / 1_000_000  # 0.00075
CLAUDE_CALL_COST = (11 * 3 + 7 * 15) / 1_000_000  # 0.000138
HELLO = {"messages": [{"role": "user", "content": "Hello"}]}


def _models(openai: FakeUpstream, anthropic: FakeUpstream, gemini: FakeUpstream) -> list[dict[str, Any]]:
    os.environ["COO_TEST_OPENAI_KEY"] = openai.api_key
    os.environ["COO_TEST_ANTHROPIC_KEY"] = anthropic.api_key
    os.environ["COO_TEST_GEMINI_KEY"] = gemini.api_key

    def model(
        name: str, provider: str, upstream: str, base: str, env: str, inp: str, out: str
    ) -> dict[str, Any]:
        return {
            "name": name,
            "deployments": [
                {
                    "provider": provider,
                    "model": upstream,
                    "api_base": base,
                    "api_key": f"env:{env}",
                    "input_price_per_mtok": inp,
                    "output_price_per_mtok": out,
                }
            ],
        }

    return [
        model("gpt-4", "openai", "gpt-4", f"{openai.base_url}/v1", "COO_TEST_OPENAI_KEY", "30", "60"),
        model(
            "claude-3-5-sonnet",
            "anthropic",
            "claude-3-5-sonnet",
            anthropic.base_url,
            "COO_TEST_ANTHROPIC_KEY",
            "3",
            "15",
        ),
        model("gemini-pro", "gemini", "gemini-2.5-pro", gemini.base_url, "COO_TEST_GEMINI_KEY", "1", "2"),
    ]


@pytest.fixture(scope="session")
async def coo(
    backend: str,
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    fake_openai_server: FakeUpstream,
    fake_anthropic_server: FakeUpstream,
    fake_gemini_server: FakeUpstream,
) -> AsyncIterator[AdminApi]:
    """The whole app (proxy and admin API) with models on three providers and an admin key per role."""
    settings = make_settings(
        database_url,
        master_key=MASTER_KEY,
        models=_models(fake_openai_server, fake_anthropic_server, fake_gemini_server),
        api_keys=[{"key": STATIC_KEY, "allowed_providers": ["openai"]}],
        redis_url=redis_url_for(backend),
    )
    async with running_admin_api(settings, sessions, "coo") as api:
        yield api


@pytest.fixture
async def admin(coo: AdminApi) -> AsyncIterator[httpx.AsyncClient]:
    async with coo.client("admin") as client:
        yield client


@pytest.fixture
def upstreams(fake_openai: FakeUpstream, fake_anthropic: FakeUpstream, fake_gemini: FakeUpstream) -> None:
    """Fresh fake upstreams (no scripted behaviour left by another test)."""


# --- helpers ----------------------------------------------------------------------------------------


async def run_seed(script: str, coo: AdminApi, cwd: Path | None = None, **env: str) -> str:
    """Run a seed script with bash (in a thread: the server shares this event loop); its stdout."""
    environment = {
        k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("PORTAL_")
    }
    environment.update(BASE_URL=coo.url, ADMIN_KEY=coo.keys["admin"], NO_PROXY="*", **env)
    done = await asyncio.to_thread(
        subprocess.run,
        ["bash", str(SEEDS / script)],
        env=environment,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def json_documents(text: str) -> list[Any]:
    """The JSON values printed one after the other in ``text``."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    index = 0
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        value, index = decoder.raw_decode(text, index)
        values.append(value)
    return values


async def chat(coo: AdminApi, key: str, model: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=coo.url, trust_env=False, timeout=30) as client:
        return await client.post(
            "/v1/chat/completions", json={"model": model, **HELLO}, headers={"Authorization": f"Bearer {key}"}
        )


# The models this module's config declares; other test modules share the database and may add
# database models of their own, which the assertions here leave aside.
CONFIG_MODELS = {"gpt-4", "claude-3-5-sonnet", "gemini-pro"}


async def model_ids(coo: AdminApi, key: str) -> set[str]:
    """The config models ``key`` may use, per ``/v1/models``."""
    async with httpx.AsyncClient(base_url=coo.url, trust_env=False, timeout=30) as client:
        response = await client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return {m["id"] for m in response.json()["data"]} & CONFIG_MODELS


def client_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def new_client(admin: httpx.AsyncClient, providers: list[str], prefix: str = "c") -> tuple[str, str]:
    """Create a client through the API; returns (client id, secret)."""
    name = client_id(prefix)
    created = await admin.post("/admin/v1/clients", json={"client_id": name, "allowed_providers": providers})
    assert created.status_code == 200, created.text
    return name, created.json()["api_key"]


def load_seed_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"coo_seed_{name}", SEEDS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- 1. the seed's curl commands --------------------------------------------------------------------


async def test_seed_client_workflow(coo: AdminApi, upstreams: None) -> None:
    began = int(time.time())
    created = json_documents(await run_seed("01_create_client.sh", coo))[0]
    assert created["id"] == "prod-app-001"
    assert created["api_key"] == "sk-prod-app-key-123"
    assert created["description"] == "Production mobile application"
    assert created["allowed_providers"] == ["openai", "anthropic"]
    assert began <= created["created_at"] <= time.time()
    assert created["last_used"] == 0

    listed = json_documents(await run_seed("02_list_clients.sh", coo))[0]
    mine = [c for c in listed["clients"] if c["id"] == "prod-app-001"]
    assert len(mine) == 1
    assert mine[0]["api_key"] != "sk-prod-app-key-123"
    assert mine[0]["api_key"].endswith("...")
    assert "sk-prod-app-key-123".startswith(mine[0]["api_key"].removesuffix("..."))
    assert {k: v for k, v in mine[0].items() if k != "api_key"} == {
        k: v for k, v in created.items() if k != "api_key"
    }

    answer = json_documents(await run_seed("03_client_chat.sh", coo))[0]
    assert answer["choices"][0]["message"]["content"] == DEFAULT_TEXT
    assert answer["usage"]["total_tokens"] == 18
    # Gemini is not among the client's providers yet.
    denied = await chat(coo, "sk-prod-app-key-123", "gemini-pro")
    assert denied.status_code == 403, denied.text
    await coo.gateway.writer.flush()

    metrics = json_documents(await run_seed("04_client_metrics.sh", coo))[0]
    assert metrics["client_id"] == "prod-app-001"
    assert metrics["total_requests"] == 2
    assert metrics["total_tokens"] == 18
    assert metrics["total_cost"] == pytest.approx(GPT4_CALL_COST)
    assert metrics["success_rate"] == pytest.approx(0.5)
    assert metrics["avg_latency"] > 0
    assert began <= metrics["last_request_time"] <= time.time()

    stats = json_documents(await run_seed("05_cost_stats.sh", coo))[0]
    assert stats["group_by"] == ["provider"]
    assert stats["filters"] == {"client_key": "prod-app-001"}
    assert stats["stats"]["openai"]["queries"] == 1
    assert stats["stats"]["openai"]["tokens"] == 18
    assert stats["stats"]["openai"]["cost"] == pytest.approx(GPT4_CALL_COST)
    assert stats["stats"]["openai"]["cost_exact"] == "0.00075"
    assert stats["total"]["queries"] == 2
    assert stats["total"]["errors"] == 1

    updated = json_documents(await run_seed("06_update_client.sh", coo))[0]
    assert updated["id"] == "prod-app-001"
    assert updated["description"] == "Updated production mobile app"
    assert updated["allowed_providers"] == ["openai", "anthropic", "gemini"]
    assert updated["last_used"] >= began
    assert (await chat(coo, "sk-prod-app-key-123", "gemini-pro")).status_code == 200

    deleted = json_documents(await run_seed("07_delete_client.sh", coo))[0]
    assert deleted == {"status": "deleted", "client_id": "prod-app-001"}
    assert (await chat(coo, "sk-prod-app-key-123", "gpt-4")).status_code == 401
    async with coo.client("admin") as admin:
        gone = await admin.get("/admin/v1/clients/prod-app-001")
    assert gone.status_code == 404
    assert gone.json() == {"error": "client prod-app-001 not found"}


async def test_seed_debug_commands(coo: AdminApi, admin: httpx.AsyncClient) -> None:
    created = await admin.post(
        "/admin/v1/clients",
        json={"client_id": "debug-client", "description": "debugging", "allowed_providers": ["openai"]},
    )
    assert created.status_code == 200, created.text
    secret = created.json()["api_key"]
    exists, models, metrics = json_documents(await run_seed("08_debug_commands.sh", coo, CLIENT_KEY=secret))
    assert exists["id"] == "debug-client"
    assert exists["allowed_providers"] == ["openai"]
    assert {m["id"] for m in models["data"]} & CONFIG_MODELS == {"gpt-4"}
    assert metrics["client_id"] == "debug-client"
    assert metrics["total_requests"] == 0
    assert metrics["last_request_time"] == 0


async def test_seed_config_backup(coo: AdminApi, tmp_path: Path) -> None:
    async with coo.sessions() as session, session.begin():
        await create_credential(
            session,
            ACTOR,
            coo.gateway.cipher,
            name="coo-upstream",
            provider="openai",
            secret=CREDENTIAL_SECRET,
        )
        model = await create_model(session, ACTOR, name="coo-db-model", description="stored in the database")
        await create_deployment(
            session,
            ACTOR,
            model,
            provider="openai",
            upstream_model="gpt-4o",
            api_base="https://proxy-user:proxy-pass@upstream.example/v1",
            credential="coo-upstream",
            input_price_per_mtok="2.5",
        )

    await run_seed("09_config_backup.sh", coo, cwd=tmp_path)
    (backup,) = await asyncio.to_thread(lambda: list(tmp_path.glob("config-*.yaml")))
    assert re.fullmatch(r"config-\d{8}\.yaml", backup.name)
    text = await asyncio.to_thread(backup.read_text)
    config = yaml.safe_load(text)
    assert config == json.loads(text)  # served as JSON, which is valid YAML
    for secret in (MASTER_KEY, TEST_SECRET, STATIC_KEY, CREDENTIAL_SECRET, "proxy-pass", coo.keys["admin"]):
        assert secret not in text
    assert config["master_key"] == REDACTED
    assert config["secret_key"] == REDACTED
    (static,) = config["api_keys"]
    assert static["key"] == REDACTED
    assert static["key_prefix"] == STATIC_KEY[:10] + "..."
    assert static["allowed_providers"] == ["openai"]
    assert [m["name"] for m in config["models"]] == ["gpt-4", "claude-3-5-sonnet", "gemini-pro"]
    assert config["models"][0]["deployments"][0]["api_key"] == "env:COO_TEST_OPENAI_KEY"
    assert config["models"][0]["deployments"][0]["input_price_per_mtok"] == "30"
    stored = {m["name"]: m for m in config["database"]["models"]}["coo-db-model"]
    assert stored["description"] == "stored in the database"
    (deployment,) = stored["deployments"]
    assert deployment["api_key"] == "credential:coo-upstream"
    assert deployment["api_base"] == f"https://proxy-user:{REDACTED}@upstream.example/v1"
    assert deployment["input_price_per_mtok"] == "2.5"
    assert {"name": "coo-upstream", "provider": "openai", "value": REDACTED} in config["database"][
        "credentials"
    ]

    async with coo.client("viewer") as viewer:
        as_yaml = await viewer.get("/admin/v1/config", params={"format": "yaml"})
        by_accept = await viewer.get("/admin/v1/config", headers={"Accept": "application/yaml"})
    for response in (as_yaml, by_accept):
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/yaml")
        assert not response.text.lstrip().startswith("{")
        loaded = yaml.safe_load(response.text)
        assert {k: v for k, v in loaded.items() if k != "generated_at"} == {
            k: v for k, v in config.items() if k != "generated_at"
        }
    async with coo.client("tenant_admin") as tenant_admin:
        refused = await tenant_admin.get("/admin/v1/config")
    assert refused.status_code == 403
    assert "config:read" in refused.json()["error"]


async def test_seed_health_check(coo: AdminApi) -> None:
    assert json_documents(await run_seed("10_health.sh", coo)) == [{"status": "ok"}]


def test_redaction_rules() -> None:
    document = {
        "database_url": "postgresql+asyncpg://portal:s3cret@db:5432/portal",
        "redis_url": "redis://:hunter2@redis:6379/0",
        "plain_url": "https://api.example/v1",
        "oidc_client_secret": "abc",
        "ldap_bind_password": "pw",
        "key_cache_ttl_s": 30.0,
        "models": [{"deployments": [{"api_key": "env:OPENAI_KEY", "extra": {"x-api-key": "k"}}]}],
        "headers": {"Authorization": "Bearer t"},
    }
    assert redact(document) == {
        "database_url": f"postgresql+asyncpg://portal:{REDACTED}@db:5432/portal",
        "redis_url": f"redis://:{REDACTED}@redis:6379/0",
        "plain_url": "https://api.example/v1",
        "oidc_client_secret": REDACTED,
        "ldap_bind_password": REDACTED,
        "key_cache_ttl_s": 30.0,
        "models": [{"deployments": [{"api_key": "env:OPENAI_KEY", "extra": {"x-api-key": REDACTED}}]}],
        "headers": {"Authorization": REDACTED},
    }


# --- 2. provider restrictions on the proxy ----------------------------------------------------------


async def test_allowed_providers_restrict_the_proxy_at_once(
    coo: AdminApi, admin: httpx.AsyncClient, upstreams: None
) -> None:
    name, key = await new_client(admin, ["openai"])
    assert (await chat(coo, key, "gpt-4")).status_code == 200
    denied = await chat(coo, key, "claude-3-5-sonnet")
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "model_not_allowed"
    assert await model_ids(coo, key) == {"gpt-4"}

    changed = await admin.put(f"/admin/v1/clients/{name}", json={"allowed_providers": ["anthropic"]})
    assert changed.status_code == 200, changed.text
    assert changed.json()["allowed_providers"] == ["anthropic"]
    assert (await chat(coo, key, "gpt-4")).status_code == 403
    assert (await chat(coo, key, "claude-3-5-sonnet")).status_code == 200

    assert (
        await admin.put(f"/admin/v1/clients/{name}", json={"allowed_providers": ["*"]})
    ).status_code == 200
    for model in ("gpt-4", "claude-3-5-sonnet", "gemini-pro"):
        assert (await chat(coo, key, model)).status_code == 200, model
    assert await model_ids(coo, key) == {"gpt-4", "claude-3-5-sonnet", "gemini-pro"}

    assert (await admin.put(f"/admin/v1/clients/{name}", json={"allowed_providers": []})).status_code == 200
    assert (await chat(coo, key, "gpt-4")).status_code == 403
    assert await model_ids(coo, key) == set()

    # A description change leaves the providers alone.
    described = await admin.put(f"/admin/v1/clients/{name}", json={"description": "now documented"})
    assert described.json()["allowed_providers"] == []
    assert described.json()["description"] == "now documented"


async def test_generated_key_and_default_providers(
    coo: AdminApi, admin: httpx.AsyncClient, upstreams: None
) -> None:
    name = client_id("gen")
    created = await admin.post("/admin/v1/clients", json={"client_id": name})
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["allowed_providers"] == ["*"]
    assert body["description"] == ""
    secret = body["api_key"]
    assert len(secret) >= 32
    assert (await chat(coo, secret, "claude-3-5-sonnet")).status_code == 200
    shown = (await admin.get(f"/admin/v1/clients/{name}")).json()["api_key"]
    assert shown != secret
    assert secret.startswith(shown.removesuffix("..."))


# --- 3. the seed's Python examples -------------------------------------------------------------------


async def test_seed_python_examples(coo: AdminApi, upstreams: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "*")
    seed = load_seed_module("client_admin")
    vars(seed).update(BASE_URL=coo.url, ADMIN_KEY=coo.keys["admin"])  # the only substitution

    created = await asyncio.to_thread(
        seed.create_client, "py-client-001", "sk-py-client-key-0001", "Created from Python", ["openai"]
    )
    assert created["id"] == "py-client-001"
    assert created["api_key"] == "sk-py-client-key-0001"
    assert created["allowed_providers"] == ["openai"]

    before = await asyncio.to_thread(seed.get_client_metrics, "py-client-001")
    assert before["total_requests"] == 0

    for model in ("gpt-4", "gpt-4", "claude-3-5-sonnet"):
        await chat(coo, "sk-py-client-key-0001", model)
    await coo.gateway.writer.flush()

    metrics = await asyncio.to_thread(seed.get_client_metrics, "py-client-001")
    assert metrics["client_id"] == "py-client-001"
    assert metrics["total_requests"] == 3
    assert metrics["total_tokens"] == 36
    assert metrics["total_cost"] == pytest.approx(2 * GPT4_CALL_COST)
    assert metrics["success_rate"] == pytest.approx(2 / 3)
    assert metrics["last_request_time"] >= int(time.time()) - 60

    # The same client twice: the seed function hands back COO-LLM's error body.
    again = await asyncio.to_thread(
        seed.create_client, "py-client-001", "sk-py-client-key-0002", "duplicate", ["openai"]
    )
    assert again == {"error": "client py-client-001 already exists"}


# --- 4. the Terraform example --------------------------------------------------------------------------


def terraform_request(
    api_url: str, admin_key: str, api_key: str
) -> tuple[str, str, dict[str, str], dict[str, Any]]:
    """(url, method, headers, body) of the seed's ``http_request`` resource, its references filled in."""
    text = (SEEDS / "terraform_client.tf").read_text()
    resource = text[text.index('resource "http_request"') :]
    url = re.search(r'url\s*=\s*"([^"]+)"', resource)
    method = re.search(r'method\s*=\s*"([^"]+)"', resource)
    headers_block = re.search(r"headers\s*=\s*\{\n(.*?)\n\s*\}\n", resource, re.S)
    body_block = re.search(r"body\s*=\s*jsonencode\(\{(.*?)\}\)", resource, re.S)
    assert url is not None
    assert method is not None
    assert headers_block is not None
    assert body_block is not None
    values = {"${var.admin_key}": admin_key, "random_password.api_key.result": json.dumps(api_key)}
    headers = {}
    for name, value in re.findall(r'([\w-]+)\s*=\s*"([^"]*)"', headers_block.group(1)):
        headers[name] = value.replace("${var.admin_key}", values["${var.admin_key}"])
    body: dict[str, Any] = {}
    for name, value in re.findall(r"(\w+)\s*=\s*(.+)", body_block.group(1)):
        body[name] = json.loads(values.get(value.strip(), value.strip()))
    return url.group(1).replace("http://coo-llm:2906", api_url), method.group(1), headers, body


async def test_seed_terraform_request(coo: AdminApi, upstreams: None) -> None:
    api_key = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
    url, method, headers, body = terraform_request(coo.url, coo.keys["admin"], api_key)
    assert body == {
        "client_id": "terraform-client",
        "api_key": api_key,
        "description": "Managed by Terraform",
        "allowed_providers": ["openai", "anthropic"],
    }
    async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
        response = await http.request(method, url, headers=headers, content=json.dumps(body))
    assert response.status_code == 200, response.text
    assert response.json()["id"] == "terraform-client"
    assert response.json()["api_key"] == api_key
    assert (await chat(coo, api_key, "claude-3-5-sonnet")).status_code == 200
    assert (await chat(coo, api_key, "gemini-pro")).status_code == 403


# --- 5. roles and errors ----------------------------------------------------------------------------


async def test_read_only_roles_cannot_change_clients(coo: AdminApi, admin: httpx.AsyncClient) -> None:
    name, _ = await new_client(admin, ["openai"])
    for role in ("viewer", "auditor"):
        async with coo.client(role) as reader:
            assert (await reader.get("/admin/v1/clients/list")).status_code == 200
            assert (await reader.get(f"/admin/v1/clients/{name}")).status_code == 200
            assert (await reader.get(f"/admin/v1/metrics/clients/{name}")).status_code == 200
            assert (await reader.get("/admin/v1/stats", params={"client_key": name})).status_code == 200
            assert (await reader.get("/admin/v1/config")).status_code == 200
            writes = [
                await reader.post("/admin/v1/clients", json={"client_id": client_id(role)}),
                await reader.put(f"/admin/v1/clients/{name}", json={"description": "x"}),
                await reader.delete(f"/admin/v1/clients/{name}"),
            ]
            for refused in writes:
                assert refused.status_code == 403, refused.text
                assert refused.json() == {"error": f"the {role} role may not do this (needs keys:write)"}
    assert (await admin.get(f"/admin/v1/clients/{name}")).json()["description"] == ""


async def test_authentication_errors(coo: AdminApi, admin: httpx.AsyncClient) -> None:
    _, client_key = await new_client(admin, ["openai"])
    async with coo.client(None) as anonymous:
        missing = await anonymous.get("/admin/v1/clients/list")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert set(missing.json()) == {"error"}
    for key, status in (("sk-not-a-real-key", 401), (client_key, 403), (MASTER_KEY, 200)):
        async with coo.client(key=key) as caller:
            response = await caller.get("/admin/v1/clients/list")
        assert response.status_code == status, response.text
        if status != 200:
            assert set(response.json()) == {"error"}


async def test_tenant_admin_manages_only_its_tenants_clients(
    coo: AdminApi, admin: httpx.AsyncClient, upstreams: None
) -> None:
    outside, _ = await new_client(admin, ["*"], prefix="outside")
    async with coo.client("tenant_admin") as tadmin:
        for response in (
            await tadmin.get(f"/admin/v1/clients/{outside}"),
            await tadmin.put(f"/admin/v1/clients/{outside}", json={"description": "mine now"}),
            await tadmin.delete(f"/admin/v1/clients/{outside}"),
            await tadmin.get(f"/admin/v1/metrics/clients/{outside}"),
            await tadmin.get("/admin/v1/stats", params={"client_key": outside}),
        ):
            assert response.status_code == 404, response.text
            assert response.json() == {"error": f"client {outside} not found"}
        name = client_id("tenant")
        created = await tadmin.post(
            "/admin/v1/clients",
            json={"client_id": name, "api_key": f"sk-{name}", "allowed_providers": ["openai"]},
        )
        assert created.status_code == 200, created.text
        listed = [c["id"] for c in (await tadmin.get("/admin/v1/clients/list")).json()["clients"]]
        assert name in listed
        assert outside not in listed
    assert (await admin.get(f"/admin/v1/clients/{outside}")).json()["description"] == ""
    assert name in [c["id"] for c in (await admin.get("/admin/v1/clients/list")).json()["clients"]]
    async with coo.sessions() as session:
        key = await session.scalar(select(ApiKey).where(ApiKey.alias == name))
    assert key is not None
    assert key.tenant_id == coo.tenant_id

    # The client is anchored at its tenant: without tenant grants it may use nothing; with them, its
    # own providers narrow what the tenant allows.
    assert (await chat(coo, f"sk-{name}", "gpt-4")).status_code == 403
    async with coo.sessions() as session, session.begin():
        assert coo.tenant_id is not None
        await add_grant(session, ACTOR, subject_type=SubjectType.TENANT, subject_id=coo.tenant_id)
    coo.gateway.invalidate()
    assert (await chat(coo, f"sk-{name}", "gpt-4")).status_code == 200
    assert (await chat(coo, f"sk-{name}", "claude-3-5-sonnet")).status_code == 403


async def test_errors_are_coo_style(admin: httpx.AsyncClient) -> None:
    name = client_id("err")
    body = {"client_id": name, "api_key": f"sk-{name}", "allowed_providers": ["openai"]}
    assert (await admin.post("/admin/v1/clients", json=body)).status_code == 200

    duplicate_id = await admin.post("/admin/v1/clients", json={**body, "api_key": f"sk-other-{name}"})
    assert duplicate_id.status_code == 409
    assert duplicate_id.json() == {"error": f"client {name} already exists"}
    duplicate_key = await admin.post("/admin/v1/clients", json={**body, "client_id": client_id("err")})
    assert duplicate_key.status_code == 409
    assert duplicate_key.json() == {"error": "a key with this value already exists"}

    fresh = client_id("err")
    cases: list[tuple[dict[str, Any] | bytes, str]] = [
        (b"{nope", ""),
        ({"api_key": "sk-missing-client-id"}, "client_id"),
        ({"client_id": fresh, "allowed_provider": ["openai"]}, "allowed_provider"),
        ({"client_id": fresh, "api_key": "short"}, "api_key"),
        ({"client_id": fresh, "allowed_providers": ["opnai"]}, "allowed_providers[0]"),
        ({"client_id": "list"}, "client_id"),
        ({"client_id": "has space"}, "client_id"),
    ]
    for payload, field in cases:
        if isinstance(payload, bytes):
            response = await admin.post(
                "/admin/v1/clients", content=payload, headers={"content-type": "application/json"}
            )
        else:
            response = await admin.post("/admin/v1/clients", json=payload)
        assert response.status_code == 400, (payload, response.text)
        assert set(response.json()) == {"error"}
        assert field in response.json()["error"], (payload, response.text)
    # A refused request leaves nothing behind (the key and its grants roll back together).
    retried = await admin.post(
        "/admin/v1/clients", json={"client_id": fresh, "allowed_providers": ["openai"]}
    )
    assert retried.status_code == 200, retried.text

    unknown = await admin.get("/admin/v1/clients/no-such-client")
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "client no-such-client not found"}
    assert (await admin.put("/admin/v1/clients/no-such-client", json={"description": "x"})).status_code == 404
    assert (await admin.delete("/admin/v1/clients/no-such-client")).status_code == 404
    assert (await admin.get("/admin/v1/metrics/clients/no-such-client")).status_code == 404
    backwards = await admin.get(f"/admin/v1/metrics/clients/{name}", params={"start": 200, "end": 100})
    assert backwards.status_code == 400
    assert "start" in backwards.json()["error"]
    assert (
        await admin.get(f"/admin/v1/metrics/clients/{name}", params={"start": "yesterday"})
    ).status_code == 400
    assert (await admin.get("/admin/v1/stats", params={"group_by": "planet"})).status_code == 400
    assert (await admin.get("/admin/v1/stats", params={"client_key": "no-such-client"})).status_code == 404
    assert (await admin.get("/admin/v1/config", params={"format": "xml"})).status_code == 400


# --- stats --------------------------------------------------------------------------------------------


async def test_stats_groups(coo: AdminApi, admin: httpx.AsyncClient, upstreams: None) -> None:
    name, key = await new_client(admin, ["*"], prefix="stats")
    for model in ("gpt-4", "gpt-4", "claude-3-5-sonnet"):
        assert (await chat(coo, key, model)).status_code == 200
    await coo.gateway.writer.flush()

    nested = (
        await admin.get("/admin/v1/stats", params={"group_by": "provider,model", "client_key": name})
    ).json()
    assert nested["group_by"] == ["provider", "model"]
    assert set(nested["stats"]) == {"openai", "anthropic"}
    gpt = nested["stats"]["openai"]["gpt-4"]
    claude = nested["stats"]["anthropic"]["claude-3-5-sonnet"]
    assert (gpt["queries"], gpt["tokens"], gpt["prompt_tokens"], gpt["completion_tokens"]) == (2, 36, 22, 14)
    assert gpt["cost_exact"] == "0.0015"
    assert claude["queries"] == 1
    assert claude["cost_exact"] == "0.000138"
    assert claude["cost"] == pytest.approx(CLAUDE_CALL_COST)
    assert nested["total"]["queries"] == 3
    assert nested["total"]["cost_exact"] == "0.001638"
    assert nested["end"] - nested["start"] == pytest.approx(86400, abs=2)

    by_client = (await admin.get("/admin/v1/stats", params={"group_by": "client", "client_key": name})).json()
    assert list(by_client["stats"]) == [name]
    assert by_client["stats"][name]["queries"] == 3

    everyone = (await admin.get("/admin/v1/stats")).json()
    assert everyone["group_by"] == ["client"]
    assert everyone["stats"][name]["queries"] == 3
    past = (await admin.get("/admin/v1/stats", params={"start": 86400, "end": 2 * 86400})).json()
    assert past["stats"] == {}
    assert past["total"]["queries"] == 0


# --- 6. audit -----------------------------------------------------------------------------------------


async def test_every_change_is_audited(coo: AdminApi, admin: httpx.AsyncClient) -> None:
    name = client_id("audit")
    created = await admin.post(
        "/admin/v1/clients",
        json={"client_id": name, "description": "first", "allowed_providers": ["openai"]},
    )
    assert created.status_code == 200
    async with coo.sessions() as session:
        key = await session.scalar(select(ApiKey).where(ApiKey.alias == name))
        assert key is not None
        key_id = str(key.id)
    assert (
        await admin.put(
            f"/admin/v1/clients/{name}", json={"description": "second", "allowed_providers": ["anthropic"]}
        )
    ).status_code == 200
    assert (await admin.delete(f"/admin/v1/clients/{name}")).status_code == 200

    async with coo.sessions() as session:
        events = (
            await session.scalars(
                select(AuditEvent).where(AuditEvent.target_id == key_id).order_by(AuditEvent.id)
            )
        ).all()
    assert [e.action for e in events] == [
        "key.created",
        "grant.replaced",
        "key.updated",
        "grant.replaced",
        "key.deleted",
    ]
    assert {e.actor_type for e in events} == {"admin_key"}
    created_event, first_grants, updated, second_grants, deleted = events
    assert created_event.before is None
    assert created_event.after is not None
    assert created_event.after["alias"] == name
    assert created_event.after["metadata"] == {"client_id": name, "description": "first"}
    assert created_event.after["key_hash"] == "<redacted>"
    assert first_grants.before == {"grants": []}
    assert first_grants.after == {"grants": [["*", "openai"]]}
    assert updated.before is not None
    assert updated.after is not None
    assert updated.before["metadata"]["description"] == "first"
    assert updated.after["metadata"]["description"] == "second"
    assert second_grants.before == {"grants": [["*", "openai"]]}
    assert second_grants.after == {"grants": [["*", "anthropic"]]}
    assert deleted.before is not None
    assert deleted.before["alias"] == name
    assert deleted.after is None
