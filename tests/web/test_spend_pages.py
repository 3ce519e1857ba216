"""``/dashboard``, ``/spend`` and ``/spend.csv``: the table's totals equal the embedded chart data and
the CSV exactly, week/month folding, inline errors for a bad range, tenant scoping for members, the
dashboard's error rate / p95 latency / budgets, and both pages drawn in Chromium."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import uuid
from decimal import Decimal
from typing import Any

import httpx
from playwright.async_api import Browser

from portal import audit
from portal.db.models import Budget, RequestLog, SpendDaily, SubjectType
from portal.tenants.service import create_tenant
from portal.timeutil import utcnow
from tests.conftest import browser_backends
from tests.e2e_support import screenshot
from tests.web.conftest import Ui

START, END = dt.date(2024, 5, 1), dt.date(2024, 5, 31)
RANGE = {"start": START.isoformat(), "end": END.isoformat()}
ACTOR = audit.Actor(type="test", label="spend page tests")
_CHART = re.compile(r'<script type="application/json" id="(?:spend|dash)-chart-data">(.*?)</script>', re.S)
_COSTS = re.compile(r'<td class="num"(?: id="spend-total")? data-cost="([^"]+)">')


def rollup(day: dt.date, tenant_id: uuid.UUID, model: str, requests: int, cost: str) -> SpendDaily:
    return SpendDaily(
        bucket=uuid.uuid4().hex,
        day=day,
        tenant_id=tenant_id,
        model=model,
        provider="mock",
        requests=requests,
        errors=1 if requests > 2 else 0,
        prompt_tokens=10 * requests,
        completion_tokens=5 * requests,
        cost=Decimal(cost),
        latency_ms_sum=100.0 * requests,
    )


async def seed(ui: Ui, marker: str, tenant_id: uuid.UUID | None = None) -> tuple[str, str]:
    """Spend of ``tenant_id`` (default ``ui.tenant``) on two models over May 2024 (awkward decimals),
    and of the other tenant."""
    mine_a, mine_b = f"alpha-{marker}", f"beta-{marker}"
    tenant = tenant_id or ui.tenant
    async with ui.sessions() as session, session.begin():
        session.add_all(
            [
                rollup(dt.date(2024, 5, 1), tenant, mine_a, 3, "0.1"),
                rollup(dt.date(2024, 5, 2), tenant, mine_a, 2, "0.2"),
                rollup(dt.date(2024, 5, 13), tenant, mine_a, 1, "0.000000000001"),
                rollup(dt.date(2024, 5, 13), tenant, mine_b, 4, "1.333333"),
                rollup(dt.date(2024, 5, 31), tenant, mine_b, 1, "2"),
                rollup(dt.date(2024, 6, 1), tenant, mine_b, 9, "99"),
                rollup(dt.date(2024, 5, 2), ui.other_tenant, f"secret-{marker}", 5, "7"),
            ]
        )
    return mine_a, mine_b


def chart_of(html: str) -> dict[str, Any]:
    match = _CHART.search(html)
    assert match is not None, html[:2000]
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def table_costs(html: str) -> list[Decimal]:
    """The cost cells of the totals table: one per group, the total last."""
    return [Decimal(v) for v in _COSTS.findall(html)]


async def get(client: httpx.AsyncClient, url: str, **params: str) -> httpx.Response:
    return await client.get(url, params=params)


async def fresh_tenant(ui: Ui, prefix: str) -> tuple[uuid.UUID, str]:
    async with ui.sessions() as session, session.begin():
        tenant = await create_tenant(session, ACTOR, slug=f"{prefix}-{uuid.uuid4().hex[:6]}", name=prefix)
    return tenant.id, tenant.slug


async def test_table_totals_equal_the_chart_and_the_csv(ui: Ui) -> None:
    tenant_id, slug = await fresh_tenant(ui, "spend")
    mine_a, mine_b = await seed(ui, uuid.uuid4().hex[:6], tenant_id)
    async with ui.browser("admin") as admin:
        for granularity, periods in (("day", 31), ("week", 5), ("month", 1)):
            params = {**RANGE, "group": "model", "granularity": granularity, "model": ""}
            response = await get(admin, "/spend", tenant=slug, **params)
            assert response.status_code == 200, response.text
            chart = chart_of(response.text)
            assert len(chart["x"]) == len(chart["labels"]) == periods
            series = {s["label"]: sum((Decimal(c) for c in s["cost"]), Decimal(0)) for s in chart["series"]}
            assert series == {mine_a: Decimal("0.300000000001"), mine_b: Decimal("3.333333")}
            *groups, total = table_costs(response.text)
            assert sorted(groups) == sorted(series.values())
            assert total == sum(series.values()) == Decimal("3.633333000001")
            assert "secret-" not in response.text
            exported = await get(admin, "/spend.csv", tenant=slug, **params)
            assert exported.status_code == 200
            assert exported.headers["content-type"].startswith("text/csv")
            assert exported.headers["content-disposition"].startswith("attachment;")
            lines = list(csv.DictReader(io.StringIO(exported.text)))
            by_model: dict[str, Decimal] = {}
            for line in lines:
                by_model[line["model"]] = by_model.get(line["model"], Decimal(0)) + Decimal(line["cost"])
            assert by_model == series
            assert sum(int(line["requests"]) for line in lines) == 11
        weekly = await get(admin, "/spend", tenant=slug, group="model", granularity="week", **RANGE)
        assert chart_of(weekly.text)["labels"][0] == "2024-04-29"  # the Monday of 1 May 2024's week


async def test_bad_input_is_an_inline_error(ui: Ui) -> None:
    async with ui.browser("admin") as admin:
        backwards = await get(admin, "/spend", start="2024-05-10", end="2024-05-01")
        assert backwards.status_code == 422
        assert 'id="spend-error"' in backwards.text
        assert "must not be before start" in backwards.text
        assert "<html" in backwards.text
        fragment = await admin.get("/spend?start=nope", headers={"HX-Request": "true"})
        assert fragment.status_code == 422
        assert "<html" not in fragment.text
        assert "YYYY-MM-DD" in fragment.text
        for params in ({"granularity": "year"}, {"group": "colour"}, {"start": "2020-01-01"}):
            assert (await get(admin, "/spend", **params)).status_code == 422
        assert (await get(admin, "/spend.csv", granularity="year")).status_code == 422
        assert (await get(admin, "/spend", tenant="no-such-tenant")).status_code == 404
        assert (await get(admin, "/dashboard", tenant="no-such-tenant")).status_code == 404


async def test_members_see_only_their_tenant(ui: Ui) -> None:
    marker = uuid.uuid4().hex[:6]
    mine_a, _ = await seed(ui, marker)
    foreign = await dashboard_world(ui)
    for kind in ("member", "tenant_admin"):
        async with ui.browser(kind) as client:
            page = await get(client, "/spend", group="model", **RANGE)
            assert page.status_code == 200
            assert mine_a in page.text
            assert f"secret-{marker}" not in page.text
            tenants = await get(client, "/spend", group="tenant", **RANGE)
            assert ui.tenant_slug in tenants.text
            assert ui.other_slug not in tenants.text
            exported = await get(client, "/spend.csv", group="model", **RANGE)
            assert mine_a in exported.text
            assert f"secret-{marker}" not in exported.text
            for url in ("/spend", "/spend.csv", "/dashboard"):
                assert (await get(client, url, tenant=ui.other_slug)).status_code == 403
                assert (await get(client, url, tenant=str(ui.other_tenant))).status_code == 403
            assert (await get(client, "/spend", tenant=ui.tenant_slug, **RANGE)).status_code == 200
            dashboard = await get(client, "/dashboard")
            assert dashboard.status_code == 200
            assert 'id="dash-top-tenant"' not in dashboard.text
            assert 'id="dash-top-model"' in dashboard.text
            assert foreign not in dashboard.text
    async with ui.browser("admin") as admin:
        page = await get(admin, "/spend", group="model", **RANGE)
        assert f"secret-{marker}" in page.text
    async with ui.browser(None) as anonymous:
        assert (await get(anonymous, "/spend")).status_code == 303


async def dashboard_world(ui: Ui) -> str:
    """A fresh tenant with today's spend, 20 logged calls (2 failed) and a budget 90 % used."""
    now = utcnow()
    tenant_id, slug = await fresh_tenant(ui, "dash")
    async with ui.sessions() as session, session.begin():
        session.add(rollup(now.date(), tenant_id, "mock-small", 20, "1.25"))
        session.add(rollup(now.date() - dt.timedelta(days=3), tenant_id, "mock-large", 2, "0.5"))
        session.add(rollup(now.date() - dt.timedelta(days=40), tenant_id, "mock-large", 2, "100"))
        for i in range(20):
            session.add(
                RequestLog(
                    request_id=f"dash-{uuid.uuid4().hex}",
                    created_at=now - dt.timedelta(minutes=i + 1),
                    tenant_id=tenant_id,
                    model="mock-small",
                    status_code=500 if i < 2 else 200,
                    latency_ms=float(10 * (i + 1)),
                )
            )
            await session.flush()
        session.add(
            Budget(
                subject_type=SubjectType.TENANT,
                subject_id=tenant_id,
                amount=Decimal(10),
                used=Decimal(9),
                period="monthly",
            )
        )
    return slug


async def test_dashboard_numbers(ui: Ui) -> None:
    slug = await dashboard_world(ui)
    async with ui.browser("operator") as operator:
        response = await get(operator, "/dashboard", tenant=slug)
        assert response.status_code == 200, response.text
        html = response.text
        chart = chart_of(html)
        assert len(chart["x"]) == 30
        assert sum(Decimal(c) for c in chart["cost"]) == Decimal("1.75")
        assert sum(chart["requests"]) == 22
        assert 'id="dash-cost">1.75 USD' in html
        assert 'id="dash-error-rate">10.0 %' in html
        assert 'id="dash-p95">190 ms' in html  # nearest rank: the 19th of 10..200
        assert 'id="dash-budgets"' in html
        assert "90 %" in html
        assert 'id="dash-top-tenant"' in html
        assert slug in html
        everyone = await get(operator, "/dashboard")
        assert everyone.status_code == 200
        assert 'id="dash-top-key"' in everyone.text


@browser_backends
async def test_pages_draw_charts_in_chromium(ui: Ui, chromium: Browser) -> None:
    tenant_id, spend_slug = await fresh_tenant(ui, "chart")
    await seed(ui, uuid.uuid4().hex[:6], tenant_id)
    slug = await dashboard_world(ui)
    context, page = await ui.page(chromium, "admin")
    try:
        await page.goto(f"/dashboard?tenant={slug}")
        await page.wait_for_selector(".chart[data-drawn='yes'] canvas")
        assert await _painted(page, "#main .chart canvas")
        await screenshot(page, "spend-dashboard")
        await page.goto(f"/spend?tenant={spend_slug}&group=model&start=2024-05-01&end=2024-05-31")
        await page.wait_for_selector(".chart[data-drawn='yes'] canvas")
        assert await _painted(page, "#spend-results canvas")
        await screenshot(page, "spend-by-model-day")
        await page.select_option("select[name=granularity]", "week")
        async with page.expect_response(lambda r: "/spend?" in r.url):
            await page.click("form.toolbar button[type=submit]")
        await page.wait_for_selector("#spend-periods >> text=2024-04-29", state="attached")
        await page.wait_for_selector(".chart[data-drawn='yes'] canvas")
        assert await _painted(page, "#spend-results canvas")
        assert "granularity=week" in page.url
        await screenshot(page, "spend-by-model-week")
        await page.emulate_media(color_scheme="dark")
        await page.goto(f"/dashboard?tenant={slug}")
        await page.wait_for_selector(".chart[data-drawn='yes'] canvas")
        await screenshot(page, "spend-dashboard-dark")
    finally:
        await context.close()


async def _painted(page: Any, selector: str) -> bool:
    """Whether the canvas at ``selector`` has any non-transparent pixel."""
    result = await page.eval_on_selector(
        selector,
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  for (let i = 3; i < d.length; i += 4) { if (d[i] !== 0) return true; } return false; }""",
    )
    return bool(result)
