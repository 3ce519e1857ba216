"""Every page route x every kind of person: each page declares its rule (``public``, ``signed_in`` or a
permission) and the page guard enforces exactly that. A page without a rule fails this test."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute
from litestar.testing import RequestFactory

from portal.auth.person import page_guard
from portal.auth.roles import ROLE_PERMISSIONS, Permission
from portal.auth.sessions import COOKIE_NAME, SessionManager
from portal.db.models import AdminRole, Membership, User
from tests.auth.conftest import Sso

PEOPLE = {
    # name: (global role, membership role in the eng tenant or None)
    "admin": ("admin", None),
    "operator": ("operator", None),
    "auditor": ("auditor", None),
    "tenant_admin": ("none", "tenant_admin"),
    "member": ("none", "member"),
    "nobody": ("none", None),
}


def page_routes(app: Litestar) -> Iterator[tuple[str, str, HTTPRouteHandler]]:
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if handler.http_methods <= {"HEAD", "OPTIONS"} or page_guard not in handler.resolve_guards():
                continue
            for method in sorted(handler.http_methods - {"HEAD", "OPTIONS"}):
                yield method, route.path, handler


def allowed(person: str, rule: object) -> bool:
    role, membership = PEOPLE[person]
    if rule in {"public", "signed_in"}:
        return True
    assert isinstance(rule, Permission)
    if role != "none":
        return rule in ROLE_PERMISSIONS[AdminRole(role)]
    return membership is not None and rule in ROLE_PERMISSIONS[AdminRole(membership)]


async def _people(sso: Sso) -> dict[str, uuid.UUID]:
    """A user for each kind of person."""
    users: dict[str, uuid.UUID] = {}
    async with sso.sessions() as session, session.begin():
        for name, (role, membership) in PEOPLE.items():
            user = User(email=f"{name}-{uuid.uuid4().hex[:6]}@example.org", display_name=name, role=role)
            session.add(user)
            await session.flush()
            users[name] = user.id
            if membership:
                session.add(Membership(user_id=user.id, tenant_id=sso.eng_tenant_id, role=membership))
    return users


async def _signed_in(sso: Sso, user_id: uuid.UUID) -> str:
    """A fresh session for ``user_id`` (pages such as /logout end the one they are given)."""
    manager: SessionManager = sso.app.state.session_manager
    cookie = await manager.start(RequestFactory(app=sso.app).get("/"), user_id)
    return str(cookie.value)


async def test_every_page_declares_a_rule(sso: Sso) -> None:
    routes = list(page_routes(sso.app))
    assert len(routes) >= 8
    missing = [f"{m} {p}" for m, p, h in routes if "page" not in h.opt]
    assert missing == [], f"pages without an access rule: {missing}"
    walked = {(m, p) for m, p, _ in routes}
    for expected in [
        ("GET", "/credentials"),
        ("POST", "/credentials"),
        ("POST", "/credentials/{ref:str}/secret"),
        ("POST", "/credentials/{ref:str}/delete"),
        ("GET", "/my"),
    ]:
        assert expected in walked, f"{expected} is not walked by the matrix"


async def test_page_by_person_matrix(sso: Sso) -> None:
    users = await _people(sso)
    mismatches: list[str] = []
    for method, path, handler in page_routes(sso.app):
        rule = handler.opt["page"]
        url = re.sub(r"\{[^}]+\}", "test", path)
        for person in [*PEOPLE, "signed_out"]:
            async with sso.browser() as browser:
                token = await sso.csrf(browser)
                if person != "signed_out":
                    browser.cookies.set(COOKIE_NAME, await _signed_in(sso, users[person]))
                data = {"_csrf_token": token} if method == "POST" else None
                response = await browser.request(method, url, data=data)
            to_login = response.status_code == 303 and response.headers["location"].startswith("/login?next=")
            refused = response.status_code == 403 and "Not allowed" in response.text
            if person == "signed_out":
                ok = (not to_login and not refused) if rule == "public" else to_login
            else:
                ok = (not to_login and not refused) if allowed(person, rule) else refused
            if not ok or response.status_code >= 500:
                mismatches.append(f"{person:12} {method:5} {path} ({rule}) -> {response.status_code}")
    assert mismatches == [], "\n".join(mismatches)
