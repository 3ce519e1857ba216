"""The keys pages: list and filters, creating a key (secret shown once), using it through the proxy with
the ``openai`` SDK, editing, blocking, rotating and revoking it, "try this key", and tenant isolation."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import httpx
import pytest
from openai import AsyncOpenAI, AuthenticationError
from playwright.async_api import Browser

from portal import audit
from portal.keys.service import create_key
from tests.conftest import browser_backends
from tests.e2e_support import screenshot
from tests.web.conftest import Ui

_SECRET = re.compile(r'<code class="secret" id="key-secret">([^<]+)</code>')


@asynccontextmanager
async def sdk(ui: Ui, secret: str) -> AsyncIterator[AsyncOpenAI]:
    client = AsyncOpenAI(
        api_key=secret,
        base_url=f"{ui.url}/v1",
        max_retries=0,
        http_client=cast("Any", httpx.AsyncClient(trust_env=False)),
    )
    try:
        yield client
    finally:
        await client.close()


async def _chat(ui: Ui, secret: str) -> str | None:
    async with sdk(ui, secret) as client:
        reply = await client.chat.completions.create(
            model="mock-small", messages=[{"role": "user", "content": "Hello"}]
        )
    return reply.choices[0].message.content


async def _create(browser: httpx.AsyncClient, **fields: str) -> tuple[str, str]:
    """Create a key through the form; (its id, its secret from the one-time page)."""
    created = await browser.post("/keys", data=fields)
    assert created.status_code == 303, created.text
    location = created.headers["location"]
    match = re.fullmatch(r"/keys/([0-9a-f-]{36})/created", location)
    assert match is not None, location
    page = await browser.get(location)
    assert page.status_code == 200
    secret = _SECRET.search(page.text)
    assert secret is not None
    return match.group(1), secret.group(1)


async def _other_tenant_key(ui: Ui) -> uuid.UUID:
    async with ui.sessions() as session, session.begin():
        new = await create_key(
            session, audit.Actor(type="test"), tenant_id=ui.other_tenant, alias="other-secret-key"
        )
    return new.key.id


async def test_member_creates_uses_and_revokes_a_key(ui: Ui) -> None:
    async with ui.browser("member") as member:
        form = await member.get("/keys/new")
        assert form.status_code == 200
        assert f'value="{ui.tenant}" selected' in form.text
        key_id, secret = await _create(
            member, tenant=str(ui.tenant), alias="member-key", grants="mock-*", rpm_limit="100"
        )
        again = await member.get(f"/keys/{key_id}/created")
        assert again.status_code == 200
        assert secret not in again.text
        assert 'id="secret-gone"' in again.text
        assert await _chat(ui, secret)

        detail = await member.get(f"/keys/{key_id}")
        assert detail.status_code == 200
        assert "member-key" in detail.text
        assert "mock-*" in detail.text
        assert secret not in detail.text
        listing = await member.get("/keys")
        assert f"/keys/{key_id}" in listing.text

        confirm = await member.get(f"/keys/{key_id}/revoke")
        assert confirm.status_code == 200
        assert "Revoke key" in confirm.text
        revoked = await member.post(f"/keys/{key_id}/revoke")
        assert revoked.status_code == 303
        with pytest.raises(AuthenticationError):
            await _chat(ui, secret)
        detail = await member.get(f"/keys/{key_id}")
        assert 'id="key-status">revoked' in detail.text
        assert 'id="block-key"' not in detail.text


async def test_member_cannot_see_or_reach_another_tenants_key(ui: Ui) -> None:
    other = await _other_tenant_key(ui)
    async with ui.browser("member") as member:
        listing = await member.get("/keys", params={"search": "other-secret"})
        assert listing.status_code == 200
        assert str(other) not in listing.text
        scoped = await member.get("/keys", params={"tenant": str(ui.other_tenant)})
        assert scoped.status_code == 422
        assert str(other) not in scoped.text
        for path in ("", "/created", "/revoke"):
            assert (await member.get(f"/keys/{other}{path}")).status_code == 404
        for action in ("block", "revoke", "rotate", "edit", "try"):
            answer = await member.post(f"/keys/{other}/{action}", data={"alias": "x", "key": "x"})
            assert answer.status_code == 404, action
        sneaky = await member.post("/keys", data={"tenant": str(ui.other_tenant), "alias": "sneaky"})
        assert sneaky.status_code == 422
        assert "not one of your tenants" in sneaky.text
    async with ui.browser("admin") as admin:
        assert (await admin.get(f"/keys/{other}")).status_code == 200
    async with ui.browser("auditor") as auditor:
        read_only = await auditor.get(f"/keys/{other}")
        assert read_only.status_code == 200
        assert 'id="block-key"' not in read_only.text
        assert (await auditor.get("/keys/new")).status_code == 403
        assert (await auditor.post(f"/keys/{other}/block")).status_code == 403


async def test_form_errors_are_shown_inline(ui: Ui) -> None:
    async with ui.browser("tenant_admin") as browser:
        bad = await browser.post(
            "/keys",
            data={"tenant": str(ui.tenant), "alias": "bad", "rpm_limit": "many", "expires": "someday"},
        )
        assert bad.status_code == 422
        assert 'id="err-rpm_limit"' in bad.text
        assert 'id="err-expires"' in bad.text
        assert 'value="bad"' in bad.text
        past = await browser.post(
            "/keys", data={"tenant": str(ui.tenant), "alias": "past", "expires": "2001-01-01"}
        )
        assert past.status_code == 422
        assert "must be in the future" in past.text
        pattern = await browser.post(
            "/keys", data={"tenant": str(ui.tenant), "alias": "p", "grants": "a b c"}
        )
        assert pattern.status_code == 422
        assert 'id="err-grants"' in pattern.text
        listing = await browser.get("/keys", params={"search": "past"})
        assert ">past<" not in listing.text  # nothing was created by the failed posts


async def test_list_filters_paginates_and_swaps_a_fragment(ui: Ui) -> None:
    tag = uuid.uuid4().hex[:6]
    async with ui.browser("admin") as admin:
        ids = [(await _create(admin, tenant=str(ui.tenant), alias=f"page-{tag}-{n}"))[0] for n in range(3)]
        first = await admin.get("/keys", params={"search": f"page-{tag}", "limit": "2"})
        assert first.status_code == 200
        assert first.headers["vary"] == "HX-Request"
        assert all(f"/keys/{i}" in first.text for i in ids[:2])
        assert f"/keys/{ids[2]}" not in first.text
        nxt = re.search(r'href="(/keys\?[^"]+cursor=[^"]+)"', first.text)
        assert nxt is not None
        second = await admin.get(nxt.group(1).replace("&amp;", "&"))
        assert f"/keys/{ids[2]}" in second.text
        assert f"/keys/{ids[0]}" not in second.text
        fragment = await admin.get(
            "/keys", params={"search": f"page-{tag}", "status": "revoked"}, headers={"HX-Request": "true"}
        )
        assert fragment.status_code == 200
        assert "<html" not in fragment.text
        assert 'id="key-table"' in fragment.text
        assert "No keys match" in fragment.text
        assert (await admin.get("/keys/test")).status_code == 404


async def test_detail_edit_block_rotate_and_try(ui: Ui) -> None:
    async with ui.browser("tenant_admin") as browser:
        key_id, secret = await _create(browser, tenant=str(ui.tenant), alias="detail-key")
        edited = await browser.post(
            f"/keys/{key_id}/edit",
            data={"alias": "renamed", "expires": "30d", "rpm_limit": "7", "grants": "mock-small"},
        )
        assert edited.status_code == 303
        detail = await browser.get(f"/keys/{key_id}")
        assert "renamed" in detail.text
        assert "mock-small" in detail.text
        assert ">7<" in detail.text

        assert (await browser.post(f"/keys/{key_id}/block")).status_code == 303
        tried = await browser.post(
            f"/keys/{key_id}/try",
            data={"key": secret, "model": "mock-small", "prompt": "hi"},
            headers={"HX-Request": "true"},
        )
        assert 'id="try-error"' in tried.text
        assert "401" in tried.text
        assert (await browser.post(f"/keys/{key_id}/unblock")).status_code == 303

        wrong = await browser.post(
            f"/keys/{key_id}/try", data={"key": "sk-wrong-secret", "model": "mock-small", "prompt": "hi"}
        )
        assert wrong.status_code == 422
        assert "not the secret" in wrong.text
        tried = await browser.post(
            f"/keys/{key_id}/try",
            data={"key": secret, "model": "mock-small", "prompt": "hi"},
            headers={"HX-Request": "true"},
        )
        assert tried.status_code == 200
        assert 'id="try-answer"' in tried.text
        assert 'id="try-cost"' in tried.text
        assert "<html" not in tried.text
        for _ in range(40):  # the spend writer records calls in batches (about every second)
            detail = await browser.get(f"/keys/{key_id}")
            if 'id="usage-requests">0<' not in detail.text:
                break
            await asyncio.sleep(0.25)
        assert 'id="usage-requests">0<' not in detail.text
        assert '<rect x="' in detail.text

        rotated = await browser.post(f"/keys/{key_id}/rotate", data={"grace_period_s": "3600"})
        assert rotated.status_code == 303
        page = await browser.get(rotated.headers["location"])
        new_secret = _SECRET.search(page.text)
        assert new_secret is not None
        assert new_secret.group(1) != secret
        assert await _chat(ui, new_secret.group(1))
        assert await _chat(ui, secret)  # still within the grace period
        bad_grace = await browser.post(f"/keys/{key_id}/rotate", data={"grace_period_s": "12"})
        assert bad_grace.status_code == 422
        assert (await browser.post(f"/keys/{key_id}/revoke")).status_code == 303
        for action in ("block", "rotate", "edit"):
            refused = await browser.post(f"/keys/{key_id}/{action}", data={"alias": "again"})
            assert refused.status_code == 409, action
            assert "revoked" in refused.text


@browser_backends
async def test_member_flow_in_chromium(ui: Ui, chromium: Browser) -> None:
    alias = f"browser-{uuid.uuid4().hex[:6]}"
    context, page = await ui.page(chromium, "member")
    try:
        await page.goto("/keys")
        await page.click("#new-key")
        await page.fill("#key-alias", alias)
        await page.fill("#key-grants", "mock-*")
        await page.click("#create-key")
        await page.wait_for_selector("#key-secret")
        secret = (await page.text_content("#key-secret")) or ""
        assert secret
        await screenshot(page, "keys-created")
        await page.reload()
        await page.wait_for_selector("#secret-gone")
        assert secret not in await page.content()
        await page.click("text=Go to the key")
        await page.fill("#try-key", secret)
        await page.fill("#try-model-name", "mock-small")
        await page.click("#try-send")
        await page.wait_for_selector("#try-answer")
        assert (await page.text_content("#try-model")) == "mock-1"  # the deployment that answered
        for _ in range(40):  # the spend writer records the call within about a second
            await page.reload()
            if (await page.text_content("#usage-requests")) != "0":
                break
            await asyncio.sleep(0.25)
        await screenshot(page, "keys-detail")
        await page.goto("/keys")
        await page.fill("#filter-search", alias)
        await page.wait_for_function("document.querySelectorAll('#key-table tbody tr').length === 1")
        await screenshot(page, "keys-list")
        await page.goto("/keys/new")
        await screenshot(page, "keys-new")
    finally:
        await context.close()
