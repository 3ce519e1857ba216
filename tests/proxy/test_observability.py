"""Operations through the real proxy: Prometheus metrics for every kind of call, the access log (and
that no key ever reaches a log), prompt/response logging with redaction, and who may scrape."""

from __future__ import annotations

import json
import logging
import uuid
from decimal import Decimal

import httpx
import pytest
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from portal.app import FastPath, create_app
from portal.db.models import ApiKey, Budget, RequestLog, SubjectType, Tenant
from portal.ops.logs import JsonFormatter, TextFormatter
from portal.tenants.service import get_tenant, update_tenant
from tests.conftest import make_settings
from tests.fakes.server import Behaviour, FakeUpstream
from tests.proxy.conftest import ACTOR, Running

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


async def scrape(http: httpx.AsyncClient) -> Samples:
    answer = await http.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def tenant_slug(gw: Running, tenant_id: uuid.UUID | None) -> str:
    async with gw.sessions() as session:
        slug = await session.scalar(select(Tenant.slug).where(Tenant.id == tenant_id))
    assert slug is not None
    return slug


async def test_calls_refusals_streams_and_clients_are_counted(
    gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream
) -> None:
    secret, key_id, tenant_id = await gw.new_key()
    slug = await tenant_slug(gw, tenant_id)
    await gw.budget(SubjectType.TENANT, tenant_id, "5")  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {secret}"}
    await gw.flush()
    before = await scrape(http)
    for _ in range(3):
        assert (await http.post("/v1/chat/completions", json=CHAT, headers=headers)).status_code == 200
    stream = await http.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=headers)
    assert stream.status_code == 200
    missing = await http.post("/v1/chat/completions", json={**CHAT, "model": "no-such"}, headers=headers)
    assert missing.status_code == 404
    assert (await http.get("/v1/models", headers=headers)).status_code == 200  # not an inference call
    await gw.flush()
    after = await scrape(http)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"model": "gpt-4o-mini", "provider": "openai"}
    assert delta("portal_requests_total", **ok, status="200") == 4
    assert delta("portal_requests_total", model="", provider="", status="404") == 1
    assert value(after, "portal_requests_total", model="no-such", provider="", status="404") == 0
    client = {"tenant": slug, "client_id": "test"}
    assert value(after, "portal_client_requests_total", **client) == 5
    assert value(after, "portal_client_errors_total", **client) == 1
    assert value(after, "portal_client_tokens_total", **client, type="prompt") == 4 * 11
    assert value(after, "portal_client_tokens_total", **client, type="completion") == 4 * 7
    rows = await gw.logs(key_id)
    assert len(rows) == 6
    spent = sum((r.cost for r in rows), Decimal(0))
    assert value(after, "portal_client_cost_usd_total", **client) == pytest.approx(float(spent))
    assert delta("portal_request_duration_seconds_count", **ok) == 4
    assert delta("portal_time_to_first_token_seconds_count", **ok) == 1
    assert delta("portal_gateway_overhead_seconds_count") == 5
    assert delta("portal_writer_flushes_total") >= 1
    async with gw.sessions() as session:
        used = await session.scalar(
            select(Budget.used).where(Budget.subject_type == "tenant", Budget.subject_id == tenant_id)
        )
    assert used == spent > 0
    remaining = value(after, "portal_budget_remaining", subject_type="tenant", subject=slug, unit="usd")
    assert remaining == pytest.approx(float(Decimal(5) - spent))


async def test_denials_cache_and_upstream_errors_are_counted(
    gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream
) -> None:
    secret, key_id, _ = await gw.new_key()
    headers = {"x-api-key": secret}
    await gw.limits(ApiKey, key_id, rpm_limit=1, cache_enabled=True)
    await gw.flush()
    before = await scrape(http)
    body = {**CHAT, "messages": [{"role": "user", "content": f"cache {uuid.uuid4()}"}]}
    assert (await http.post("/v1/chat/completions", json=body, headers=headers)).status_code == 200
    hit = await http.post("/v1/chat/completions", json=body, headers=headers)
    assert hit.headers["x-portal-cache"] == "hit"
    other = {**CHAT, "messages": [{"role": "user", "content": "another"}]}
    assert (await http.post("/v1/chat/completions", json=other, headers=headers)).status_code == 429
    await gw.limits(ApiKey, key_id, rpm_limit=None)
    flaky = await http.post("/v1/chat/completions", json={**CHAT, "model": "flaky"}, headers=headers)
    assert flaky.status_code == 200  # its mock deployment fails twice, then the fallback answers
    await gw.flush()
    after = await scrape(http)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("portal_cache_hits_total", model="gpt-4o-mini") == 1
    assert delta("portal_cache_misses_total", model="gpt-4o-mini") == 2
    assert delta("portal_limit_denials_total", kind="rpm", level="key") == 1
    assert delta("portal_upstream_errors_total", provider="mock", model="flaky", reason="server_error") == 2
    assert delta("portal_requests_total", model="gpt-4o-mini", provider="", status="429") == 1


async def test_access_log_has_one_line_per_call_and_never_a_key(
    gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    secret, key_id, tenant_id = await gw.new_key()
    slug = await tenant_slug(gw, tenant_id)
    prefix = (await gw.key_row(key_id)).key_prefix
    caplog.set_level(logging.DEBUG)
    rid = f"obs-{uuid.uuid4().hex[:12]}"
    headers = {"Authorization": f"Bearer {secret}", "x-request-id": rid}
    assert (await http.post("/v1/chat/completions", json=CHAT, headers=headers)).status_code == 200
    fake_openai.script(Behaviour(status=400, message="bad things"))
    failed = await http.post("/v1/chat/completions", json=CHAT, headers={"x-api-key": secret})
    assert failed.status_code == 400
    wrong = "sk-wrong-key-" + uuid.uuid4().hex
    assert (
        await http.post("/v1/chat/completions", json=CHAT, headers={"x-api-key": wrong})
    ).status_code == 401
    await gw.flush()
    lines = [
        json.loads(line)
        for r in caplog.records
        if r.name == "portal.access"
        for line in r.getMessage().split("\n")
    ]
    mine = [line for line in lines if line["request_id"] == rid]
    assert len(mine) == 1
    assert (
        mine[0].items()
        >= {
            "tenant": slug,
            "key_prefix": prefix,
            "client_id": "test",
            "model": "gpt-4o-mini",
            "provider": "openai",
            "status": 200,
            "prompt_tokens": 11,
            "completion_tokens": 7,
        }.items()
    )
    assert mine[0]["latency_ms"] > 0
    assert any(line["status"] == 400 and line["key_prefix"] == prefix for line in lines)
    assert any(line["status"] == 401 for line in lines)
    rendered = [f.format(r) for r in caplog.records for f in (JsonFormatter(), TextFormatter())]
    for text in [caplog.text, *rendered]:
        assert secret not in text
        assert wrong not in text


async def test_payloads_are_stored_redacted_only_for_tenants_that_ask(
    gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream
) -> None:
    secret, key_id, tenant_id = await gw.new_key()
    plain_secret, plain_key, _ = await gw.new_key()
    async with gw.sessions() as session, session.begin():
        tenant = await get_tenant(session, tenant_id)  # type: ignore[arg-type]
        await update_tenant(session, ACTOR, tenant, {"log_prompts": True})
    gw.gateway.invalidate()
    leaky = "my key is sk-proj-ABCDEFGHIJKLMNOP1234 and my card 4111 1111 1111 1111"
    answer = "Sure, write to jane.doe@corp.example or call +1 415 555 0100."
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": leaky}]}
    fake_openai.script(Behaviour(text=answer), Behaviour(text=answer, chunks=4))
    headers = {"x-api-key": secret}
    assert (await http.post("/v1/chat/completions", json=body, headers=headers)).status_code == 200
    streamed = await http.post("/v1/chat/completions", json={**body, "stream": True}, headers=headers)
    assert streamed.status_code == 200
    assert (
        await http.post("/v1/chat/completions", json=body, headers={"x-api-key": plain_secret})
    ).is_success
    rows = await gw.logs(key_id)
    assert [r.stream for r in rows] == [False, True]
    for row in rows:
        assert row.prompt is not None
        assert row.response is not None
        assert "sk-proj-ABCDEFGHIJKLMNOP1234" not in row.prompt
        assert "4111 1111 1111 1111" not in row.prompt
        assert "[REDACTED:key]" in row.prompt
        assert "[REDACTED:card]" in row.prompt
        assert json.loads(row.prompt)[0]["role"] == "user"
        assert row.response == "Sure, write to [REDACTED:email] or call [REDACTED:phone]."
    async with gw.sessions() as session:
        others = (await session.scalars(select(RequestLog).where(RequestLog.api_key_id == plain_key))).all()
    assert len(others) == 1
    assert others[0].prompt is None
    assert others[0].response is None


async def test_metrics_token_and_listener_rules(database_url: str) -> None:
    token = "metrics-token-0123456789"
    app = create_app(make_settings(database_url, metrics_token=token))
    async with AsyncTestClient(app=app) as client:
        assert (await client.get("/metrics")).status_code == 401
        assert (
            await client.get("/metrics", headers={"Authorization": "Bearer wrong-token"})
        ).status_code == 401
        answer = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200
        assert "portal_requests_total" in answer.text or "# HELP portal_requests_total" in answer.text

    async def status(door: FastPath, port: int, auth: str | None = None) -> int:
        sent: list[dict[str, object]] = []
        headers = [(b"authorization", auth.encode())] if auth else []
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/metrics",
            "raw_path": b"/metrics",
            "query_string": b"",
            "headers": headers,
            "server": ("127.0.0.1", port),
            "client": ("127.0.0.1", 5000),
            "scheme": "http",
            "http_version": "1.1",
            "root_path": "",
        }

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        await door(scope, receive, send)  # type: ignore[arg-type]
        return int(sent[0]["status"])  # type: ignore[call-overload]

    open_door = FastPath(
        create_app(make_settings(database_url, admin_listen="127.0.0.1:9999")), admin_port=9999
    )
    assert await status(open_door, 8000) == 404  # public listener: no token, no metrics
    assert await status(open_door, 9999) == 200  # admin listener
    guarded = FastPath(
        create_app(make_settings(database_url, admin_listen="127.0.0.1:9999", metrics_token=token)),
        admin_port=9999,
    )
    assert await status(guarded, 8000) == 401
    assert await status(guarded, 8000, f"Bearer {token}") == 200
    assert await status(guarded, 9999, f"Bearer {token}") == 200


async def test_access_log_can_be_turned_off(database_url: str, sessions: object) -> None:
    from portal.ops.metrics import observe_calls
    from portal.proxy.gateway import Gateway

    for enabled, taps in ((True, 2), (False, 1)):
        gateway = Gateway(make_settings(database_url, access_log=enabled), sessions)  # type: ignore[arg-type]
        try:
            assert len(gateway.writer.taps) == taps
            assert gateway.writer.taps[0] is observe_calls
        finally:
            await gateway.client.aclose()
