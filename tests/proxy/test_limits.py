"""Budgets, token quotas and rate limits through the running gateway (memory backend on SQLite,
Redis backend on PostgreSQL)."""

from __future__ import annotations

import asyncio
import math
from decimal import Decimal

import httpx
from sqlalchemy import func, select

from portal.db.models import ApiKey, AuditEvent, BudgetKind, RequestLog, SubjectType, Tenant
from portal.limits.model import NANO
from portal.proxy.tokens import estimate_prompt_tokens
from tests.fakes.server import Behaviour, FakeUpstream
from tests.proxy.conftest import Running

IN, OUT = Decimal("0.15"), Decimal("0.60")


def body(content: str = "hi", max_tokens: int = 1000) -> dict[str, object]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
    }


def cost(prompt: int, completion: int) -> Decimal:
    return (IN * prompt + OUT * completion) / Decimal(1_000_000)


async def test_200_concurrent_requests_never_overspend_the_budget(
    gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream
) -> None:
    secret, key_id, tenant_id = await gw.new_key()
    assert tenant_id is not None
    request = body()
    estimate_tokens = estimate_prompt_tokens(request)
    estimate = math.ceil(cost(estimate_tokens, 1000) * NANO) / NANO
    budget = estimate * 10 + estimate / 2
    await gw.budget(SubjectType.TENANT, tenant_id, str(budget))
    fake_openai.default = Behaviour(prompt_tokens=estimate_tokens + 3, completion_tokens=900, delay=0.5)
    limits = httpx.Limits(max_connections=250)
    async with httpx.AsyncClient(base_url=gw.url, trust_env=False, timeout=30, limits=limits) as wide:
        responses = await asyncio.gather(
            *(
                wide.post("/v1/chat/completions", json=request, headers={"x-api-key": secret})
                for _ in range(200)
            )
        )
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 402]
    assert len(ok) + len(refused) == 200, sorted({r.status_code: r.text for r in responses}.items())
    assert 10 <= len(ok) <= 12, "admitted while reservations fit, plus what settled estimates gave back"
    error = refused[0].json()["error"]
    assert "Budget has been exceeded" in error["message"]
    assert error["type"] == "budget_exceeded"
    rows = await gw.logs(key_id)
    spent = sum((r.cost for r in rows), Decimal(0))
    actual = cost(estimate_tokens + 3, 900)
    estimate_error = max(Decimal(0), actual - estimate) * len(ok)
    assert spent == actual * len(ok)
    assert spent <= budget + estimate_error
    for _ in range(5):
        if (
            await http.post("/v1/chat/completions", json=request, headers={"x-api-key": secret})
        ).status_code == 402:
            break
    else:
        raise AssertionError("the budget kept admitting calls")
    rows = await gw.logs(key_id)
    assert sum((r.cost for r in rows), Decimal(0)) <= budget + estimate_error + max(0, actual - estimate) * 5


async def test_budget_applies_at_every_level_and_raising_it_takes_effect_at_once(
    gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream
) -> None:
    secret, key_id, tenant_id = await gw.new_key()
    fake_openai.default = Behaviour(prompt_tokens=10, completion_tokens=10)
    await gw.budget(SubjectType.KEY, key_id, "0.000001")
    denied = await http.post("/v1/chat/completions", json=body(max_tokens=10), headers={"x-api-key": secret})
    assert denied.status_code == 402
    assert "key budget" in denied.json()["error"]["message"]
    await gw.budget(SubjectType.KEY, key_id, "10")
    assert tenant_id is not None
    await gw.budget(SubjectType.TENANT, tenant_id, "0.000001")
    denied = await http.post("/v1/chat/completions", json=body(max_tokens=10), headers={"x-api-key": secret})
    assert denied.status_code == 402
    assert "tenant budget" in denied.json()["error"]["message"]
    await gw.budget(SubjectType.TENANT, tenant_id, "10")
    ok = await http.post("/v1/chat/completions", json=body(max_tokens=10), headers={"x-api-key": secret})
    assert ok.status_code == 200


async def test_monthly_token_quota(gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream) -> None:
    secret, key_id, _ = await gw.new_key()
    fake_openai.default = Behaviour(prompt_tokens=20, completion_tokens=30)
    await gw.budget(SubjectType.KEY, key_id, "120", kind=BudgetKind.TOKENS)
    headers = {"x-api-key": secret}
    assert (
        await http.post("/v1/chat/completions", json=body(max_tokens=40), headers=headers)
    ).status_code == 200
    assert (
        await http.post("/v1/chat/completions", json=body(max_tokens=40), headers=headers)
    ).status_code == 200
    third = await http.post("/v1/chat/completions", json=body(max_tokens=40), headers=headers)
    assert third.status_code == 429
    assert third.json()["error"]["type"] == "insufficient_quota"
    usage = (await http.get("/v1/me/usage", headers=headers)).json()
    assert usage["quota_used"] == 100
    assert usage["quota_monthly"] == 120
    assert usage["quota_reset_at"].startswith(("20", "21"))


async def test_requests_per_minute_with_openai_headers(
    gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream
) -> None:
    secret, key_id, _ = await gw.new_key()
    await gw.limits(ApiKey, key_id, rpm_limit=3)
    headers = {"x-api-key": secret}
    answers = [await http.post("/v1/chat/completions", json=body(), headers=headers) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["x-ratelimit-limit-requests"] == "3"
    assert answers[0].headers["x-ratelimit-remaining-requests"] == "2"
    refused = answers[3]
    assert refused.json()["error"]["type"] == "rate_limit_exceeded"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
    usage = (await http.get("/v1/me/usage", headers=headers)).json()
    assert usage["rpm_limit"] == 3
    assert usage["rpm_remaining"] == 0


async def test_tokens_per_minute_at_tenant_level(
    gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream
) -> None:
    secret, _, tenant_id = await gw.new_key()
    assert tenant_id is not None
    await gw.limits(Tenant, tenant_id, tpm_limit=2500)
    headers = {"x-api-key": secret}
    first = await http.post("/v1/chat/completions", json=body(max_tokens=1000), headers=headers)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-tokens"] == "2500"
    second = await http.post("/v1/chat/completions", json=body(max_tokens=2490), headers=headers)
    assert second.status_code == 429
    assert "tokens per minute" in second.json()["error"]["message"]


async def test_parallel_request_limit(
    gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream
) -> None:
    secret, key_id, _ = await gw.new_key()
    await gw.limits(ApiKey, key_id, max_parallel=2)
    fake_openai.default = Behaviour(delay=0.4)
    answers = await asyncio.gather(
        *(http.post("/v1/chat/completions", json=body(), headers={"x-api-key": secret}) for _ in range(5))
    )
    assert sorted(a.status_code for a in answers) == [200, 200, 429, 429, 429]
    fake_openai.default = Behaviour()
    again = await http.post("/v1/chat/completions", json=body(), headers={"x-api-key": secret})
    assert again.status_code == 200, "slots are released when calls end"


async def test_failed_upstream_call_releases_its_reservation(
    gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream
) -> None:
    secret, key_id, _ = await gw.new_key()
    request = body(max_tokens=100)
    estimate = math.ceil(cost(estimate_prompt_tokens(request), 100) * NANO) / NANO
    await gw.budget(SubjectType.KEY, key_id, str(estimate * Decimal("1.5")))
    fake_openai.fail(400, "bad request")
    assert (
        await http.post("/v1/chat/completions", json=request, headers={"x-api-key": secret})
    ).status_code == 400
    fake_openai.default = Behaviour(prompt_tokens=1, completion_tokens=1)
    ok = await http.post("/v1/chat/completions", json=request, headers={"x-api-key": secret})
    assert ok.status_code == 200, "the failed call's reservation was given back"


async def test_me_usage_reports_every_level(
    gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream
) -> None:
    secret, key_id, tenant_id = await gw.new_key()
    assert tenant_id is not None
    fake_openai.default = Behaviour(prompt_tokens=100, completion_tokens=50)
    await gw.budget(SubjectType.KEY, key_id, "5", period="daily")
    await gw.budget(SubjectType.TENANT, tenant_id, "100", period="30d")
    headers = {"X-API-Key": secret}
    assert (await http.post("/v1/chat/completions", json=body(), headers=headers)).status_code == 200
    await gw.flush()
    usage = (await http.get("/v1/me/usage", headers=headers)).json()
    expected = cost(100, 50)
    key_level = usage["levels"]["key"]
    assert Decimal(key_level["spend"]) == expected
    [key_budget] = key_level["budgets"]
    assert Decimal(key_budget["max_budget"]) == 5
    assert Decimal(key_budget["used"]) == expected
    assert key_budget["period"] == "daily"
    assert key_budget["reset_at"] is not None
    [tenant_budget] = usage["levels"]["tenant"]["budgets"]
    assert tenant_budget["period"] == "30d"
    assert Decimal(tenant_budget["used"]) == expected
    for field in ("quota_used", "quota_monthly", "quota_reset_at", "rpm_limit", "rpm_remaining"):
        assert field in usage


async def test_soft_threshold_audits_and_calls_the_webhook_once(
    gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream
) -> None:
    secret, key_id, _ = await gw.new_key()
    hook_url = f"{fake_openai.base_url}/hooks/budget"
    budget_id = await gw.budget(
        SubjectType.KEY, key_id, str(cost(1000, 0) * 4), soft_threshold=0.5, webhook_url=hook_url
    )
    fake_openai.default = Behaviour(prompt_tokens=1000, completion_tokens=0)
    for _ in range(3):
        answer = await http.post(
            "/v1/chat/completions", json=body(max_tokens=1), headers={"x-api-key": secret}
        )
        assert answer.status_code == 200
    await gw.gateway.notifier.drain()
    hooks = [r for r in fake_openai.requests if r.path == "/hooks/budget"]
    assert len(hooks) == 1
    assert hooks[0].json["event"] == "budget.soft_threshold"
    assert hooks[0].json["budget_id"] == str(budget_id)
    async with gw.sessions() as session:
        events = await session.scalar(
            select(func.count()).where(
                AuditEvent.action == "budget.soft_threshold", AuditEvent.target_id == str(budget_id)
            )
        )
    assert events == 1


async def test_refusals_are_logged_and_cost_nothing(
    gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream
) -> None:
    secret, key_id, _ = await gw.new_key()
    await gw.budget(SubjectType.KEY, key_id, "0")
    assert (
        await http.post("/v1/chat/completions", json=body(), headers={"x-api-key": secret})
    ).status_code == 402
    assert fake_openai.requests == []
    [row] = await gw.logs(key_id)
    assert (row.status_code, row.error_type, row.cost) == (402, "budget_exceeded", Decimal(0))
    async with gw.sessions() as session:
        assert await session.scalar(select(func.count()).where(RequestLog.api_key_id == key_id)) == 1
