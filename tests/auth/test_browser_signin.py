"""Signing in with a real browser: Debian's Chromium, driven by Playwright, against the live portal of
the ``sso`` fixture and the real OIDC provider (npm ``oidc-provider``).

Covers the OIDC round trip (portal -> provider's login form -> callback -> /account), a wrong password
at the provider, the break-glass form behind its ``<details>`` plus "Sign out", and forms whose CSRF
token was changed or removed in the page. One Chromium serves the module; every test gets a fresh
browser context (its own cookies). Screenshots go to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, expect

from tests.auth.conftest import BREAK_GLASS_ID, BREAK_GLASS_PASSWORD, Sso
from tests.conftest import browser_backends
from tests.e2e_support import DEFAULT_TIMEOUT_MS, launch_chromium, screenshot

pytestmark = [pytest.mark.e2e, browser_backends]

expect.set_options(timeout=DEFAULT_TIMEOUT_MS)


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Browser]:
    """One headless Chromium for this module's tests."""
    async with launch_chromium() as browser:
        yield browser


@pytest.fixture
async def tab(chromium: Browser, sso: Sso) -> AsyncIterator[Page]:
    """A page in a fresh browser context (no cookies) whose relative URLs go to the portal."""
    context = await chromium.new_context(base_url=sso.url, viewport={"width": 1100, "height": 760})
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def _assert_signed_out(tab: Page, sso: Sso) -> None:
    await tab.goto("/account")
    await expect(tab).to_have_url(f"{sso.url}/login?next=%2Faccount")


async def _open_break_glass_form(tab: Page, username: str, password: str) -> None:
    """On /login: open the local account's ``<details>`` and fill its form."""
    await tab.goto("/login")
    details = tab.locator("details.auth-form")
    await expect(details).not_to_have_attribute("open", "")
    await details.locator("summary").click()
    await expect(details).to_have_attribute("open", "")
    await tab.locator("#local-username").fill(username)
    await tab.locator("#local-password").fill(password)


async def test_oidc_sign_in_through_the_provider(tab: Page, sso: Sso, backend: str) -> None:
    await tab.goto("/account")
    await expect(tab).to_have_url(f"{sso.url}/login?next=%2Faccount")
    await expect(tab.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
    await screenshot(tab, f"login-{backend}")

    await tab.get_by_role("link", name="Sign in with Test IdP").click()
    await expect(tab).to_have_url(re.compile(rf"^{re.escape(sso.idp.issuer)}/interaction/"))
    await tab.get_by_label("Username").fill("alice")
    await tab.get_by_label("Password").fill("alice-password")
    await tab.get_by_role("button", name="Sign in").click()

    await expect(tab).to_have_url(f"{sso.url}/account")
    await expect(tab.locator("#account-role")).to_have_text("admin")
    await expect(tab.get_by_role("heading", name="Alice Admin")).to_be_visible()
    await screenshot(tab, f"account-oidc-{backend}")


async def test_wrong_password_at_the_provider_creates_no_session(tab: Page, sso: Sso) -> None:
    await tab.goto("/login?next=%2Faccount")
    await tab.get_by_role("link", name="Sign in with Test IdP").click()
    await expect(tab).to_have_url(re.compile(rf"^{re.escape(sso.idp.issuer)}/interaction/"))
    await tab.get_by_label("Username").fill("alice")
    await tab.get_by_label("Password").fill("not-her-password")
    async with tab.expect_response(lambda r: r.request.method == "POST") as answer:
        await tab.get_by_role("button", name="Sign in").click()
    assert (await answer.value).status == 401

    assert tab.url.startswith(sso.idp.issuer), "the browser stays at the provider"
    await expect(tab.get_by_role("alert")).to_have_text("Wrong username or password")
    await _assert_signed_out(tab, sso)


async def test_break_glass_sign_in_and_sign_out(tab: Page, sso: Sso) -> None:
    await _open_break_glass_form(tab, BREAK_GLASS_ID, BREAK_GLASS_PASSWORD)
    await tab.locator("details.auth-form").get_by_role("button", name="Sign in").click()
    await expect(tab).to_have_url(f"{sso.url}/account")
    await expect(tab.locator("#account-role")).to_have_text("admin")

    await tab.get_by_role("button", name="Sign out", exact=True).click()
    await expect(tab).to_have_url(f"{sso.url}/login")
    await _assert_signed_out(tab, sso)


@pytest.mark.parametrize(
    ("how", "script"),
    [
        pytest.param("changed", "(input) => { input.value = 'forged-' + input.value; }", id="changed"),
        pytest.param("removed", "(input) => input.remove()", id="removed"),
    ],
)
async def test_a_tampered_csrf_token_is_refused(
    tab: Page, sso: Sso, backend: str, how: str, script: str
) -> None:
    await _open_break_glass_form(tab, BREAK_GLASS_ID, BREAK_GLASS_PASSWORD)
    form = tab.locator("details.auth-form form")
    await form.locator('input[name="_csrf_token"]').evaluate(script)
    assert await form.locator('input[name="_csrf_token"]').count() == (0 if how == "removed" else 1)

    async with tab.expect_response(lambda r: r.url == f"{sso.url}/auth/local") as answer:
        await form.get_by_role("button", name="Sign in").click()
    assert (await answer.value).status == 403
    await expect(tab.get_by_role("heading", name="Form expired")).to_be_visible()
    await screenshot(tab, f"form-expired-{how}-{backend}")
    await _assert_signed_out(tab, sso)
