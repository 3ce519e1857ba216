"""Recorded spend equals the upstream's usage x the deployment's prices: plain, streaming, and a
client that disconnects mid-stream (billed for what was delivered, marked estimated)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from portal.app import create_app
from portal.db.models import RequestLog, SpendDaily
from tests.conftest import make_settings
from tests.fakes.server import Behaviour, FakeUpstream
from tests.proxy.conftest import Running

IN, OUT = Decimal("0.15"), Decimal("0.60")


def price(prompt: int, completion: int) -> Decimal:
    return (IN * prompt + OUT * completion) / Decimal(1_000_000)


async def test_plain_call_spend_is_exact(
    gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream
) -> None:
    secret, key_id, tenant_id = await gw.new_key()
    fake_openai.script(Behaviour(prompt_tokens=1234, completion_tokens=567))
    response = await http.post(
        "/v1/chat/completions",
        headers={"x-api-key": secret},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 200
    expected = price(1234, 567)
    assert Decimal(response.headers["x-portal-cost"]) == expected
    [row] = await gw.logs(key_id)
    assert (row.prompt_tokens, row.completion_tokens, row.total_tokens) == (1234, 567, 1801)
    assert row.cost == expected
    assert row.estimated is False
    assert row.status_code == 200
    assert row.provider == "openai"
    assert row.request_id == response.headers["x-request-id"]
    key = await gw.key_row(key_id)
    assert key.spend_total == expected
    assert key.last_used_at is not None
    async with gw.sessions() as session:
        rolled = await session.scalar(
            select(func.sum(SpendDaily.cost)).where(SpendDaily.tenant_id == tenant_id)
        )
    assert rolled == expected


async def test_stream_spend_uses_upstream_usage(
    gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream
) -> None:
    secret, key_id, _ = await gw.new_key()
    fake_openai.script(Behaviour(prompt_tokens=40, completion_tokens=900, chunks=5))
    async with http.stream(
        "POST",
        "/v1/chat/completions",
        headers={"x-api-key": secret},
        json={"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    ) as response:
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
    assert body.rstrip().endswith(b"data: [DONE]")
    assert b'"usage":{' not in body, "usage chunk stripped when the client did not ask for it"
    [row] = await gw.logs(key_id)
    assert row.stream is True
    assert (row.prompt_tokens, row.completion_tokens) == (40, 900)
    assert row.cost == price(40, 900)
    assert row.estimated is False
    assert row.ttft_ms is not None
    assert row.ttft_ms <= row.latency_ms


async def test_client_disconnect_bills_what_was_delivered(
    gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream
) -> None:
    secret, key_id, _ = await gw.new_key()
    text = "abcd" * 50
    fake_openai.script(
        Behaviour(text=text, chunks=50, chunk_delay=0.05, prompt_tokens=10, completion_tokens=50)
    )
    received = b""
    async with http.stream(
        "POST",
        "/v1/chat/completions",
        headers={"x-api-key": secret},
        json={"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    ) as response:
        async for chunk in response.aiter_bytes():
            received += chunk
            if received.count(b"data: ") >= 6:
                break
    for _ in range(100):
        rows = await gw.logs(key_id)
        if rows:
            break
        await asyncio.sleep(0.05)
    [row] = rows
    assert row.status_code == 499
    assert row.error_type == "client_disconnected"
    assert row.estimated is True
    assert 0 < row.completion_tokens < 50, "billed for part of the answer, not all and not nothing"
    assert row.cost == price(row.prompt_tokens, row.completion_tokens)
    assert row.cost > 0


async def test_denials_and_errors_are_logged(
    gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream
) -> None:
    secret, key_id, _ = await gw.new_key(grants=[("gpt-*", "*")])
    headers = {"x-api-key": secret}
    await http.post(
        "/v1/chat/completions",
        headers=headers,
        json={"model": "claude-sonnet", "messages": [{"role": "user", "content": "x"}]},
    )
    fake_openai.fail(400, "messages must not be empty")
    bad = await http.post(
        "/v1/chat/completions",
        headers=headers,
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
    )
    assert bad.status_code == 400
    assert "messages must not be empty" in bad.json()["error"]["message"]
    rows = await gw.logs(key_id)
    assert [(r.status_code, r.cost) for r in rows] == [(403, Decimal(0)), (400, Decimal(0))]


async def test_concurrent_calls_all_recorded_exactly(
    gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream
) -> None:
    secret, key_id, _ = await gw.new_key()
    fake_openai.default = Behaviour(prompt_tokens=3, completion_tokens=7)
    results = await asyncio.gather(
        *(
            http.post(
                "/v1/chat/completions",
                headers={"x-api-key": secret},
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": str(i)}]},
            )
            for i in range(40)
        )
    )
    assert all(r.status_code == 200 for r in results)
    rows = await gw.logs(key_id)
    assert len(rows) == 40
    assert sum((r.cost for r in rows), Decimal(0)) == price(3, 7) * 40
    assert (await gw.key_row(key_id)).spend_total == price(3, 7) * 40


async def test_graceful_shutdown_flushes_the_writer(gw: Running, database_url: str) -> None:
    secret, key_id, _ = await gw.new_key()
    models = [{"name": "mock-model", "deployments": [{"provider": "mock", "model": "mock-1"}]}]
    app = create_app(make_settings(database_url, models=models, writer_interval_s=60))
    async with AsyncTestClient(app=app) as client:
        response = await client.post(
            "/v1/chat/completions",
            headers={"x-api-key": secret},
            json={"model": "mock-model", "messages": [{"role": "user", "content": "flush me"}]},
        )
        assert response.status_code == 200
        assert app.state.gateway.writer.queue_depth == 1, "still queued: the writer batches"
    async with gw.sessions() as session:
        rows = (await session.scalars(select(RequestLog).where(RequestLog.api_key_id == key_id))).all()
    assert [r.request_id for r in rows] == [response.headers["x-request-id"]]
