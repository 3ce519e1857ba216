"""The portal end to end, in Chromium, the way an operator and a tenant member use it: sign in through
the real OIDC provider; create a tenant, grant it the models and add a member; issue a key and call the
proxy with it through the ``openai`` SDK; see the spend appear on the tenant's chart (once the batched
writer has written it); revoke the key and see the proxy refuse it (401); and the member, signed in
through the provider too, sees their tenant and nothing of another. Screenshots of each page go to
``test-artifacts/screenshots/flow-*.png``."""

from __future__ import annotations

import json
import re
import uuid
from decimal import Decimal
from typing import Any, cast

import httpx
import pytest
from openai import AsyncOpenAI, AuthenticationError
from playwright.async_api import Browser, Page, expect

from tests.conftest import browser_backends
from tests.e2e.conftest import MEMBER_EMAIL, Flow
from tests.e2e_support import DEFAULT_TIMEOUT_MS, screenshot

pytestmark = [pytest.mark.e2e, browser_backends]

expect.set_options(timeout=DEFAULT_TIMEOUT_MS)
SPEND_WAIT_S = 20


async def _sign_in(page: Page, flow: Flow, start: str, username: str) -> None:
    """Open ``start``, get sent to /login, sign in at the provider, and land back on ``start``."""
    await page.goto(start)
    await expect(page).to_have_url(re.compile(r"/login\?next="))
    await page.get_by_role("link", name="Sign in with Test IdP").click()
    await expect(page).to_have_url(re.compile(rf"^{re.escape(flow.idp.issuer)}/interaction/"))
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(f"{username}-password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{flow.url}{start}")


async def _chat(flow: Flow, secret: str) -> str | None:
    client = AsyncOpenAI(
        api_key=secret,
        base_url=f"{flow.url}/v1",
        max_retries=0,
        http_client=cast("Any", httpx.AsyncClient(trust_env=False)),
    )
    try:
        reply = await client.chat.completions.create(
            model="mock-small", messages=[{"role": "user", "content": "Hello from the flow"}]
        )
    finally:
        await client.close()
    return reply.choices[0].message.content


async def _chart(page: Page) -> tuple[int, Decimal]:
    """The requests and the spend the tenant's chart shows (from the data it draws)."""
    data = json.loads(await page.locator("#tenant-spend-chart-data").text_content() or "{}")
    return sum(data.get("requests", [])), sum((Decimal(c) for c in data.get("cost", [])), Decimal(0))


async def test_operator_and_member_flow(flow: Flow, chromium: Browser, backend: str) -> None:
    slug = f"flow-{uuid.uuid4().hex[:6]}"
    name = "Flow Team"
    operator = await chromium.new_context(base_url=flow.url, viewport={"width": 1280, "height": 900})
    operator.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page = await operator.new_page()
    try:
        await _sign_in(page, flow, "/dashboard", "alice")
        await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
        await screenshot(page, f"flow-dashboard-{backend}")

        await page.goto("/tenants")
        await page.get_by_text("New tenant").click()
        await page.get_by_label("Slug").fill(slug)
        await page.get_by_label("Name", exact=True).fill(name)
        await page.get_by_role("button", name="Create tenant").click()
        await expect(page).to_have_url(f"{flow.url}/tenants/{slug}")
        await expect(page.locator("#flashes")).to_contain_text(f"Tenant {slug} created.")

        await page.get_by_label("Add a person").fill(MEMBER_EMAIL)
        await page.get_by_role("button", name="Add member").click()
        await expect(page.locator("#members")).to_contain_text(MEMBER_EMAIL)

        await page.goto("/grants")
        await page.locator("#g-type").select_option("tenant")
        await page.locator("#g-subject").fill(slug)
        await page.locator("#g-model").fill("mock-*")
        await expect(page.locator("#preview")).to_contain_text("mock-small")
        await page.get_by_role("button", name="Add grant").click()
        await expect(page.locator("#flashes")).to_contain_text("Granted mock-*")
        await screenshot(page, f"flow-grants-{backend}")

        await page.goto("/keys/new")
        await page.get_by_label("Tenant").select_option(label=f"{name} ({slug})")
        await page.get_by_label("Alias").fill("flow-key")
        await page.get_by_role("button", name="Create key").click()
        await expect(page).to_have_url(re.compile(r"/keys/[0-9a-f-]{36}/created$"))
        secret = (await page.locator("#key-secret").text_content() or "").strip()
        assert secret.startswith("sk-")
        key_url = page.url.removesuffix("/created")

        assert await _chat(flow, secret)

        await page.goto(f"/tenants/{slug}")
        for _ in range(SPEND_WAIT_S * 2):  # the batched writer records the call about every second
            if (await _chart(page))[0] > 0:
                break
            await page.wait_for_timeout(500)
            await page.reload()
        requests, cost = await _chart(page)
        assert requests == 1
        assert cost > 0
        await expect(page.locator("#tenant-spend-total")).to_contain_text(f"{cost} USD in 1 request ")
        await expect(page.locator("#spend .chart .uplot")).to_be_visible()
        await expect(page.locator("#keys")).to_contain_text("flow-key")
        await screenshot(page, f"flow-tenant-{backend}")

        await page.goto(key_url)
        await page.locator("#revoke-key").click()
        await page.locator("#confirm-revoke").click()
        await expect(page.locator("#key-status")).to_have_text("revoked")
        await screenshot(page, f"flow-key-revoked-{backend}")
        with pytest.raises(AuthenticationError) as refused:
            await _chat(flow, secret)
        assert refused.value.status_code == 401
    finally:
        await operator.close()

    member = await chromium.new_context(base_url=flow.url, viewport={"width": 1280, "height": 900})
    member.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page = await member.new_page()
    try:
        await _sign_in(page, flow, "/my", "carol")
        await expect(page.get_by_role("heading", name=name)).to_be_visible()
        await expect(page.locator("main")).not_to_contain_text(flow.other_slug)
        await screenshot(page, f"flow-member-my-{backend}")
        await page.goto("/tenants")
        await expect(page.locator("#tenant-table")).to_contain_text(slug)
        await expect(page.locator("#tenant-table")).not_to_contain_text(flow.other_slug)
        response = await page.goto(f"/tenants/{flow.other_slug}")
        assert response is not None
        assert response.status == 404
        await expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    finally:
        await member.close()
