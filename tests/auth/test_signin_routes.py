"""Signing in through the real routes against the real providers: OIDC (npm oidc-provider), LDAP
(slapd) and the local break-glass account; group mapping, audit, CSRF, throttling, fixation, sign-out."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select

from portal.auth.sessions import COOKIE_NAME
from portal.db.models import AuditEvent, Membership, User, UserIdentity
from tests.auth.conftest import BREAK_GLASS_ID, BREAK_GLASS_PASSWORD, Sso


async def _events(sso: Sso, action: str) -> list[AuditEvent]:
    async with sso.sessions() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        )
        return list(rows.all())


async def test_oidc_sign_in_maps_groups_to_the_admin_role(sso: Sso) -> None:
    async with sso.browser() as browser:
        done = await sso.sign_in_oidc(browser, "alice", "alice-password")
        assert done.status_code == 303, done.text
        assert done.headers["location"] == "/account"
        account = await browser.get("/account")
        assert account.status_code == 200
        assert 'id="account-role">admin<' in account.text
    async with sso.sessions() as session:
        identity = await session.scalar(
            select(UserIdentity).where(UserIdentity.provider == "oidc:test", UserIdentity.subject == "alice")
        )
        assert identity is not None
        assert "portal-admins" in identity.groups
    logins = [e for e in await _events(sso, "auth.login") if (e.after or {}).get("subject") == "alice"]
    assert logins
    assert await _events(sso, "user.role_mapped")


async def test_oidc_group_maps_to_a_tenant_admin_membership(sso: Sso) -> None:
    async with sso.browser() as browser:
        done = await sso.sign_in_oidc(browser, "bob", "bob-password")
        assert done.status_code == 303
        account = await browser.get("/account")
        assert "tenant_admin" in account.text
    async with sso.sessions() as session:
        user_id = await session.scalar(
            select(UserIdentity.user_id).where(
                UserIdentity.provider == "oidc:test", UserIdentity.subject == "bob"
            )
        )
        membership = await session.scalar(
            select(Membership).where(Membership.user_id == user_id, Membership.tenant_id == sso.eng_tenant_id)
        )
    assert membership is not None
    assert (membership.role, membership.source) == ("tenant_admin", "sso")


async def test_oidc_tampered_and_replayed_state_are_refused(sso: Sso) -> None:
    async with sso.browser() as browser:
        start = await browser.get("/auth/oidc/test/login")
        async with httpx.AsyncClient(trust_env=False, timeout=30) as at_provider:
            callback = await sso.idp.login(at_provider, start.headers["location"], "carol", "carol-password")
        tampered = callback.replace("state=", "state=x")
        refused = await browser.get(tampered)
        assert refused.status_code == 401
        assert "no longer valid" in refused.text
        assert (await browser.get(callback)).status_code == 303  # the genuine callback still works once
        again = await browser.get(callback)
        assert again.status_code == 401, "a callback is good once"
    failures = [(e.after or {}).get("reason") for e in await _events(sso, "auth.login_failed")]
    assert "invalid_state" in failures


async def test_oidc_wrong_password_gets_no_session(sso: Sso) -> None:
    from tests.fakes.oidc_fixture import ProviderRejected

    async with sso.browser() as browser:
        start = await browser.get("/auth/oidc/test/login")
        async with httpx.AsyncClient(trust_env=False, timeout=30) as at_provider:
            with pytest.raises(ProviderRejected) as rejected:
                await sso.idp.login(at_provider, start.headers["location"], "alice", "not-her-password")
        assert rejected.value.status_code == 401
        assert (await browser.get("/account")).status_code == 303


async def test_ldap_sign_in_and_failures(sso: Sso) -> None:
    user = sso.ldap.users["o'brien"]
    async with sso.browser() as browser:
        wrong = await sso.sign_in_ldap(browser, "o'brien", "wrong")
        assert wrong.status_code == 401
        assert "wrong user name or password" in wrong.text
        for attack in ("*)(uid=*", "*", "o'brien)(|(uid=*", "o*"):
            injected = await sso.sign_in_ldap(browser, attack, user.password)
            assert injected.status_code == 401, attack
        done = await sso.sign_in_ldap(browser, "o'brien", user.password)
        assert done.status_code == 303, done.text
        account = await browser.get("/account")
        assert "tenant_admin" in account.text, "team-eng maps to tenant admin of eng for LDAP too"


async def test_one_email_two_providers_is_refused_not_merged(sso: Sso) -> None:
    """alice@example.org signs in with OIDC; the LDAP account with the same email may not take it over."""
    async with sso.browser() as browser:
        assert (await sso.sign_in_oidc(browser, "alice", "alice-password")).status_code == 303
    async with sso.browser() as browser:
        refused = await sso.sign_in_ldap(browser, "alice", sso.ldap.users["alice"].password)
        assert refused.status_code == 401
        assert "signs in another way" in refused.text
    reasons = [(e.after or {}).get("reason") for e in await _events(sso, "auth.login_failed")]
    assert "email_taken" in reasons


async def test_local_break_glass_sign_in(sso: Sso) -> None:
    async with sso.browser() as browser:
        done = await sso.sign_in_local(browser, BREAK_GLASS_ID, BREAK_GLASS_PASSWORD)
        assert done.status_code == 303, done.text
        account = await browser.get("/account")
        assert 'id="account-role">admin<' in account.text


async def test_throttling_per_account(sso: Sso) -> None:
    name = f"nobody-{uuid.uuid4().hex[:6]}"
    async with sso.browser() as browser:
        statuses = [(await sso.sign_in_local(browser, name, "guess")).status_code for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
        blocked = await sso.sign_in_local(browser, name, "guess")
        assert "too many failed sign-ins" in blocked.text


async def test_a_form_without_csrf_token_is_refused(sso: Sso) -> None:
    async with sso.browser() as browser:
        await browser.get("/login")
        refused = await browser.post(
            "/auth/local", data={"username": BREAK_GLASS_ID, "password": BREAK_GLASS_PASSWORD}
        )
        assert refused.status_code == 403
        assert "Form expired" in refused.text
        assert COOKIE_NAME not in refused.cookies


async def test_session_fixation_is_prevented(sso: Sso) -> None:
    async with sso.browser() as browser:
        start = await browser.get("/auth/oidc/test/login")  # an anonymous session exists now
        planted = browser.cookies.get(COOKIE_NAME)
        assert planted
        async with httpx.AsyncClient(trust_env=False, timeout=30) as at_provider:
            callback = await sso.idp.login(at_provider, start.headers["location"], "carol", "carol-password")
        assert (await browser.get(callback)).status_code == 303
        issued = browser.cookies.get(COOKIE_NAME)
        assert issued
        assert issued != planted, "the session id changes at sign-in"
    async with sso.browser() as attacker:
        attacker.cookies.set(COOKIE_NAME, planted)
        assert (await attacker.get("/account")).status_code == 303, "the pre-sign-in id is worthless"


async def test_cookie_flags_and_sign_out(sso: Sso) -> None:
    async with sso.browser() as browser:
        done = await sso.sign_in_local(browser, BREAK_GLASS_ID, BREAK_GLASS_PASSWORD)
        header = next(v for k, v in done.headers.multi_items() if k == "set-cookie" and COOKIE_NAME in v)
        assert "HttpOnly" in header
        assert "SameSite=lax" in header or "SameSite=Lax" in header
        account = await browser.get("/account")
        assert account.status_code == 200
        import re

        csrf = re.search(r'name="_csrf_token" value="([^"]+)"', account.text)
        assert csrf is not None
        out = await browser.post("/logout", data={"_csrf_token": csrf.group(1)})
        assert out.status_code == 303
        assert (await browser.get("/account")).status_code == 303
    assert await _events(sso, "auth.logout")


async def test_sign_out_everywhere_ends_every_browser(sso: Sso) -> None:
    import re

    async with sso.browser() as one, sso.browser() as two:
        for browser in (one, two):
            assert (await sso.sign_in_local(browser, BREAK_GLASS_ID, BREAK_GLASS_PASSWORD)).status_code == 303
        page = await one.get("/account")
        csrf = re.search(r'name="_csrf_token" value="([^"]+)"', page.text)
        assert csrf is not None
        ended = await one.post("/account/sign-out-everywhere", data={"_csrf_token": csrf.group(1)})
        assert ended.status_code == 303
        assert (await two.get("/account")).status_code == 303
        assert (await one.get("/account")).status_code == 303


async def test_signed_out_visitors_go_to_the_sign_in_page(sso: Sso) -> None:
    async with sso.browser() as browser:
        response = await browser.get("/account")
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=%2Faccount"
        htmx = await browser.get("/account", headers={"HX-Request": "true"})
        assert htmx.status_code == 401
        assert htmx.headers["hx-redirect"].startswith("/login")
        login = await browser.get("/login")
        assert login.status_code == 200
        assert "Sign in with Test IdP" in login.text


async def test_a_disabled_user_cannot_sign_in(sso: Sso) -> None:
    async with sso.browser() as browser:
        assert (await sso.sign_in_oidc(browser, "carol", "carol-password")).status_code == 303
    async with sso.sessions() as session, session.begin():
        user_id = await session.scalar(
            select(UserIdentity.user_id).where(
                UserIdentity.provider == "oidc:test", UserIdentity.subject == "carol"
            )
        )
        user = await session.get(User, user_id)
        assert user is not None
        user.status = "disabled"
    try:
        async with sso.browser() as browser:
            refused = await sso.sign_in_oidc(browser, "carol", "carol-password")
            assert refused.status_code == 401
            assert "disabled" in refused.text
    finally:
        async with sso.sessions() as session, session.begin():
            user = await session.get(User, user_id)
            assert user is not None
            user.status = "active"


async def test_throttling_per_client_address(sso: Sso) -> None:
    """Many accounts tried from one address: the address is throttled (4x the per-account limit)."""
    address = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    async with sso.browser() as browser:
        browser.headers["x-forwarded-for"] = address
        statuses = [
            (await sso.sign_in_local(browser, f"guess-{uuid.uuid4().hex[:8]}", "guess")).status_code
            for _ in range(13)
        ]
        assert statuses == [401] * 12 + [429]
        blocked = await sso.sign_in_local(browser, BREAK_GLASS_ID, BREAK_GLASS_PASSWORD)
        assert blocked.status_code == 429, "the right password does not help from a throttled address"
    async with sso.browser() as elsewhere:
        elsewhere.headers["x-forwarded-for"] = "198.51.100.7"
        assert (await sso.sign_in_local(elsewhere, BREAK_GLASS_ID, BREAK_GLASS_PASSWORD)).status_code == 303


async def test_local_sign_in_can_be_turned_off(database_url: str) -> None:
    from litestar.testing import AsyncTestClient

    from portal.app import create_app
    from tests.conftest import make_settings

    settings = make_settings(
        database_url,
        local_login=False,
        secure_cookies=False,
        admin_id="offline-admin",
        admin_password="long enough password",
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        page = await client.get("/login")
        assert "Local account" not in page.text
        token = client.cookies.get("portal_csrf")
        assert token
        refused = await client.post(
            "/auth/local",
            data={"username": "offline-admin", "password": "long enough password"},
            headers={"x-csrftoken": token},
        )
        assert refused.status_code == 401
        assert "local sign-in is turned off" in refused.text
        assert COOKIE_NAME not in refused.cookies


async def test_htmx_requests_carry_the_csrf_token_in_a_header(sso: Sso) -> None:
    """Pages tell htmx to send the token as ``X-CSRFToken``; a state-changing request with it passes."""
    import re

    async with sso.browser() as browser:
        assert (await sso.sign_in_local(browser, BREAK_GLASS_ID, BREAK_GLASS_PASSWORD)).status_code == 303
        page = await browser.get("/account")
        match = re.search(r'"X-CSRFToken": "([^"]+)"', page.text)
        assert match is not None
        without = await browser.post("/logout", headers={"HX-Request": "true"})
        assert without.status_code == 403
        with_header = await browser.post(
            "/logout", headers={"HX-Request": "true", "X-CSRFToken": match.group(1)}
        )
        assert with_header.status_code == 303
