"""How the portal looks and whether everyone can use it: every main page in Chromium, light and dark,
wide and at 390 px, saved as ``test-artifacts/screenshots/looks-<page>-<scheme>-<width>.png``. Each
must have the landmarks (banner, navigation, main), a label for every visible form control, no page
wider than the screen, and a visible keyboard focus; a confirmation works with the keyboard alone."""

from __future__ import annotations

import uuid

import pytest
from playwright.async_api import Browser, Page, expect

from portal import audit
from portal.catalog.credentials import create_credential
from portal.keys.service import create_key
from tests.conftest import browser_backends
from tests.e2e_support import DEFAULT_TIMEOUT_MS, screenshot
from tests.web.conftest import Ui

pytestmark = [pytest.mark.e2e, browser_backends]

STAFF_PAGES = {
    "dashboard": "/dashboard",
    "tenants": "/tenants",
    "tenant": "/tenants/{tenant}",
    "keys": "/keys",
    "key-new": "/keys/new",
    "key": "/keys/{key}",
    "models": "/models",
    "credentials": "/credentials",
    "grants": "/grants",
    "explain": "/grants/explain",
    "spend": "/spend",
    "logs": "/logs",
    "audit": "/audit",
    "account": "/account",
}
MEMBER_PAGES = {"my": "/my", "member-tenant": "/tenants/{tenant}", "member-keys": "/keys"}
VIEWS = [("light", 1280), ("dark", 1280), ("light", 390), ("dark", 390)]

TOO_WIDE = """(width) => [...document.querySelectorAll('body *')]
  .filter(el => el.getBoundingClientRect().right > width + 1)
  .slice(0, 5).map(el => el.tagName + '.' + el.className + '#' + el.id)"""
UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter(el => el.type !== 'hidden' && el.offsetParent !== null)
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                && !el.getAttribute('aria-labelledby'))
  .map(el => el.outerHTML.slice(0, 120))"""


async def _check(page: Page, width: int) -> None:
    await expect(page.locator("header.topbar")).to_be_visible()
    await expect(page.get_by_role("navigation", name="Main")).to_be_attached()
    await expect(page.locator("main#main")).to_be_visible()
    assert await page.evaluate(UNLABELLED) == [], page.url
    overflow = await page.evaluate("document.documentElement.scrollWidth")
    too_wide = await page.evaluate(TOO_WIDE, width) if overflow > width + 1 else []
    assert overflow <= width + 1, f"{page.url} is {overflow}px wide at {width}px: {too_wide}"


async def _credential(ui: Ui) -> None:
    """A stored credential, so the credentials page shows a row."""
    async with ui.sessions() as session, session.begin():
        await create_credential(
            session,
            audit.Actor(type="test"),
            ui.app.state.gateway.cipher,
            name=f"openai-{uuid.uuid4().hex[:6]}",
            provider="openai",
            secret="sk-looks-secret-9f3c",
        )


async def _key(ui: Ui) -> uuid.UUID:
    async with ui.sessions() as session, session.begin():
        new = await create_key(session, audit.Actor(type="test"), tenant_id=ui.tenant, alias="looks-key")
    return new.key.id


@pytest.mark.parametrize(("scheme", "width"), VIEWS, ids=[f"{s}-{w}" for s, w in VIEWS])
async def test_every_main_page(ui: Ui, chromium: Browser, backend: str, scheme: str, width: int) -> None:
    values = {"tenant": ui.tenant_slug, "key": str(await _key(ui))}
    await _credential(ui)
    for kind, pages in (("admin", STAFF_PAGES), ("member", MEMBER_PAGES)):
        context = await chromium.new_context(
            base_url=ui.url,
            viewport={"width": width, "height": 900},
            color_scheme=scheme,  # type: ignore[arg-type]
        )
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        value = await ui.session_cookie(kind)
        await context.add_cookies([{"name": "portal_session", "value": value, "url": ui.url}])
        page = await context.new_page()
        try:
            for name, path in pages.items():
                response = await page.goto(path.format(**values))
                assert response is not None
                assert response.status == 200, (name, response.status)
                await page.wait_for_load_state("networkidle")
                if backend == "sqlite":  # one set of pictures is enough
                    await screenshot(page, f"looks-{name}-{scheme}-{width}")
                await _check(page, width)
        finally:
            await context.close()


async def test_keyboard_focus_and_confirmation(ui: Ui, chromium: Browser) -> None:
    key_id = await _key(ui)
    context, page = await ui.page(chromium, "member")
    try:
        await page.goto("/tenants")
        await page.keyboard.press("Tab")
        skip = page.get_by_role("link", name="Skip to content")
        await expect(skip).to_be_focused()
        outline = await skip.evaluate("el => getComputedStyle(el).outlineStyle")
        assert outline != "none"

        await page.goto(f"/keys/{key_id}")
        await page.locator("#revoke-key").focus()
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("heading", name="Revoke key")).to_be_visible()
        await page.locator("#confirm-revoke").focus()
        await page.keyboard.press("Enter")
        await expect(page.locator("#key-status")).to_have_text("revoked")
    finally:
        await context.close()
