"""The request-log and audit-log pages: filters and cursor pagination, the live tail over server-sent
events, tenant isolation for members, the audit diff, the JSONL export, and a Chromium flow."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import uuid
from decimal import Decimal
from typing import Any

from playwright.async_api import Browser, expect

from portal import audit
from portal.db.models import RequestLog
from portal.timeutil import utcnow
from tests.conftest import browser_backends
from tests.e2e_support import screenshot
from tests.web.conftest import Ui

T0 = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)


def _row(tenant_id: uuid.UUID | None, model: str, minute: int = 0, **fields: Any) -> RequestLog:
    values: dict[str, Any] = {
        "request_id": f"req-{uuid.uuid4().hex}",
        "created_at": T0 + dt.timedelta(minutes=minute),
        "tenant_id": tenant_id,
        "status_code": 200,
        "model": model,
        "provider": "mock",
        "key_prefix": "sk-test",
        "total_tokens": 12,
        **fields,
    }
    return RequestLog(**values)


async def _insert(ui: Ui, rows: list[RequestLog]) -> list[str]:
    async with ui.sessions() as session, session.begin():
        for row in rows:
            session.add(row)
            await session.flush()
    return [row.request_id for row in rows]


def _rows(html: str) -> int:
    return len(re.findall(r'<tr id="log-\d+"', html))


def _fragment(html: str) -> bool:
    return "<html" not in html and 'id="log-results"' in html


async def test_log_filters_and_pagination(ui: Ui) -> None:
    model = f"m-{uuid.uuid4().hex[:8]}"
    rows = [_row(ui.tenant, model, minute=i) for i in range(55)]
    rows += [_row(ui.tenant, model, minute=60, status_code=502, error_type="upstream")]
    rows += [_row(ui.tenant, model, minute=61, cached=True)]
    ids = await _insert(ui, rows)
    async with ui.browser("admin") as admin:
        first = await admin.get("/logs", params={"model": model})
        assert first.status_code == 200
        assert first.headers["vary"] == "HX-Request"
        assert _rows(first.text) == 50
        assert ids[-1] in first.text
        assert ids[0] not in first.text
        assert 'id="logs-older"' in first.text
        older = first.text.split('id="logs-older" href="')[1].split('"')[0].replace("&amp;", "&")
        second = await admin.get(older, headers={"HX-Request": "true"})
        assert second.status_code == 200
        assert _fragment(second.text)
        assert _rows(second.text) == 7
        assert ids[0] in second.text
        assert ids[-1] not in second.text

        failed = await admin.get("/logs", params={"model": model, "status": "502"})
        assert _rows(failed.text) == 1
        assert ids[-2] in failed.text
        cached = await admin.get("/logs", params={"model": model, "cached": "yes"})
        assert _rows(cached.text) == 1
        assert ids[-1] in cached.text
        window = await admin.get(
            "/logs", params={"model": model, "start": "2025-03-01T09:10", "end": "2025-03-01T09:14"}
        )
        assert _rows(window.text) == 5
        by_tenant = await admin.get("/logs", params={"model": model, "tenant": ui.other_slug})
        assert _rows(by_tenant.text) == 0

        bad = await admin.get("/logs", params={"status": "abc", "start": ""})
        assert bad.status_code == 422
        assert 'class="error"' in bad.text
        assert "status" in bad.text


async def test_log_detail_and_member_isolation(ui: Ui) -> None:
    model = f"m-{uuid.uuid4().hex[:8]}"
    own, other = await _insert(
        ui,
        [
            _row(ui.tenant, model, prompt="hello there", response="general kenobi"),
            _row(ui.other_tenant, model),
        ],
    )
    async with ui.browser("member") as member:
        listing = await member.get("/logs", params={"model": model})
        assert listing.status_code == 200
        assert own in listing.text
        assert other not in listing.text
        detail = await member.get(f"/logs/{own}")
        assert detail.status_code == 200
        assert "hello there" in detail.text
        assert "general kenobi" in detail.text
        hidden = await member.get(f"/logs/{other}")
        assert hidden.status_code == 404
        assert "does not exist" in hidden.text
        assert (await member.get("/logs", params={"tenant": ui.other_slug})).status_code == 403
        assert (await member.get("/logs/no-such-request")).status_code == 404
    async with ui.browser("admin") as admin:
        assert (await admin.get(f"/logs/{other}")).status_code == 200
        unstored = await admin.get(f"/logs/{other}")
        assert 'id="log-prompt"' not in unstored.text


async def _next_log_event(lines: Any) -> str:
    event, data = "", []
    async for line in lines:
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line == "" and data:
            if event == "log":
                return "\n".join(data)
            event, data = "", []
    raise AssertionError("the stream ended")


async def test_stream_delivers_new_rows_of_the_tenant(ui: Ui) -> None:
    model = f"m-{uuid.uuid4().hex[:8]}"
    async with ui.browser("member") as member:
        refused = await member.get("/logs/stream")
        assert refused.status_code == 406
        headers = {"Accept": "text/event-stream"}
        async with member.stream("GET", "/logs/stream", headers=headers) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()
            await asyncio.sleep(0.3)
            foreign, own = await _insert(
                ui,
                [
                    _row(ui.other_tenant, model, created_at=utcnow()),
                    _row(ui.tenant, model, created_at=utcnow()),
                ],
            )
            seen: list[str] = []
            async with asyncio.timeout(15):  # rows other tests wrote for this tenant may come first
                while not any(own in data for data in seen):
                    seen.append(await _next_log_event(lines))
            assert all(data.startswith("<tr id=") for data in seen)
            assert not any(foreign in data for data in seen)


async def _audit_event(ui: Ui, action: str) -> int:
    async with ui.sessions() as session, session.begin():
        event = await audit.record(
            session,
            audit.Actor(type="test", id="tester-1", label="log page tests"),
            action,
            target_type="tenant",
            target_id=ui.tenant,
            tenant_id=ui.tenant,
            before={"name": "Old Name", "budget": "10", "status": "active"},
            after={"name": "New Name", "budget": "10", "status": "active", "note": "hi"},
        )
        return event.id


async def test_audit_list_diff_and_export(ui: Ui) -> None:
    action = f"test.{uuid.uuid4().hex[:8]}"
    first = await _audit_event(ui, f"{action}.first")
    second = await _audit_event(ui, f"{action}.second")
    async with ui.browser("auditor") as auditor:
        listing = await auditor.get("/audit", params={"action": action})
        assert listing.status_code == 200
        assert f'id="audit-{first}"' in listing.text
        assert f'id="audit-{second}"' in listing.text
        assert listing.text.index(f"audit-{second}") < listing.text.index(f"audit-{first}")
        narrowed = await auditor.get(
            "/audit", params={"action": f"{action}.sec", "actor": "tester-1"}, headers={"HX-Request": "true"}
        )
        assert "<html" not in narrowed.text
        assert f'id="audit-{second}"' in narrowed.text
        assert f'id="audit-{first}"' not in narrowed.text
        nobody = await auditor.get("/audit", params={"action": action, "actor": "someone-else"})
        assert "No audit events match" in nobody.text

        detail = await auditor.get(f"/audit/{first}")
        assert detail.status_code == 200
        diff = detail.text.split('id="audit-diff"')[1].split("</table>")[0]
        assert 'class="diff-changed" data-field="name"' in diff
        assert "Old Name" in diff
        assert "New Name" in diff
        assert 'class="diff-added" data-field="note"' in diff
        assert 'data-field="budget"' not in diff
        unchanged = detail.text.split('id="audit-unchanged"')[1].split("</details>")[0]
        assert "2 unchanged fields" in unchanged
        assert 'data-field="budget"' in unchanged

        assert (await auditor.get("/audit/999999999")).status_code == 404
        assert (await auditor.get("/audit/test")).status_code == 404

        export = await auditor.get("/audit.jsonl", params={"action": action})
        assert export.status_code == 200
        assert "attachment" in export.headers["content-disposition"]
        lines = [json.loads(line) for line in export.text.splitlines()]
        assert [line["id"] for line in lines] == [second, first]
        assert lines[1]["before"]["name"] == "Old Name"
        assert lines[1]["after"]["name"] == "New Name"
        assert lines[0]["seq"] > lines[1]["seq"]
        assert all(len(line["hash"]) == len(line["prev_hash"]) == 64 for line in lines)


async def test_audit_is_refused_without_audit_read(ui: Ui) -> None:
    for kind in ("member", "tenant_admin", "operator"):
        async with ui.browser(kind) as browser:
            for url in ("/audit", "/audit.jsonl", "/audit/1"):
                response = await browser.get(url)
                assert response.status_code == 403, (kind, url)


@browser_backends
async def test_logs_and_audit_in_chromium(ui: Ui, chromium: Browser) -> None:
    model = f"m-{uuid.uuid4().hex[:8]}"
    now = utcnow()
    await _insert(
        ui,
        [
            _row(ui.tenant, model, created_at=now - dt.timedelta(minutes=3), cost=Decimal("0.0012")),
            _row(ui.tenant, model, created_at=now - dt.timedelta(minutes=2), status_code=429, cached=False),
            _row(ui.tenant, model, created_at=now - dt.timedelta(minutes=1), cached=True, stream=True),
        ],
    )
    action = f"test.{uuid.uuid4().hex[:8]}"
    event_id = await _audit_event(ui, action)
    context, page = await ui.page(chromium, "admin")
    try:
        await page.goto("/logs")
        await page.fill("#f-model", model)
        await page.click("form.toolbar button[type=submit]")
        await expect(page.locator("#log-rows tr")).to_have_count(3)
        await expect(page).to_have_url(re.compile(rf"/logs\?.*model={model}"))
        (live,) = await _insert(ui, [_row(ui.tenant, model, created_at=utcnow())])
        await expect(page.locator("#log-rows tr")).to_have_count(4)
        await screenshot(page, "logs")
        await page.locator("#log-rows tr a").first.click()
        await expect(page.locator("h1")).to_contain_text(live)
        await screenshot(page, "logs-detail")

        await page.goto("/audit")
        await page.fill("#a-action", action)
        await page.click("form.toolbar button[type=submit]")
        await expect(page.locator("#audit-rows tr")).to_have_count(1)
        await page.click(f"#audit-{event_id} a")
        await expect(page.locator("#audit-diff")).to_contain_text("New Name")
        await expect(page.locator("#audit-unchanged")).not_to_have_attribute("open", "")
        await screenshot(page, "audit-detail")
        await page.goto("/audit")
        await screenshot(page, "audit")
    finally:
        await context.close()
