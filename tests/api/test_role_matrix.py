"""Every admin route x every role: the route declares a permission, and the guard enforces exactly the
role rules of ``portal.auth.roles``. A new route without a rule makes this test fail.

For each route and role the test makes a real request (placeholder ids, an empty JSON body): a role
without the route's permission gets 403 from the guard; a role with it is never refused by the guard
(it may still get 404 or 422 for the placeholder input, which is fine). Without a key: 401; with a
proxy-only key: 403.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute

from portal.auth.admin import admin_guard
from portal.auth.person import page_guard
from portal.auth.roles import ROLE_PERMISSIONS, Permission
from portal.db.models import AdminRole
from tests.api.conftest import ACTOR, AdminApi

GUARD_REFUSAL = "may not do this"
# Routes that are public on purpose (no admin guard): health, pages, static files, the proxy, API docs.
PUBLIC_PREFIXES = ("/healthz", "/readyz", "/health", "/static", "/v1/", "/api/docs")
PUBLIC_EXACT = {"/", "/v1"}


def admin_routes(app: Litestar) -> Iterator[tuple[str, str, HTTPRouteHandler]]:
    """(method, path, handler) of every HTTP route; public ones are checked to be on the allow list."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if handler.http_methods <= {"HEAD", "OPTIONS"}:
                continue
            guards = handler.resolve_guards()
            if page_guard in guards:  # pages: checked by tests/auth/test_page_matrix.py
                assert "page" in handler.opt, f"{route.path} is a page without an access rule"
                continue
            guarded = admin_guard in guards
            for method in sorted(handler.http_methods - {"HEAD", "OPTIONS"}):
                if not guarded:
                    assert route.path in PUBLIC_EXACT or route.path.startswith(PUBLIC_PREFIXES), (
                        f"{method} {route.path} has no admin guard and is not a known public route"
                    )
                    continue
                yield method, route.path, handler


def concrete(path: str) -> str:
    """The route path with placeholder parameters (a random UUID fits every id-or-name parameter)."""
    return re.sub(
        r"\{[^}]+\}", lambda m: "usd" if m.group(0).startswith("{kind") else str(uuid.uuid4()), path
    )


async def test_every_admin_route_declares_a_permission(admin_api: AdminApi) -> None:
    routes = list(admin_routes(admin_api.app))
    assert len(routes) >= 6
    missing = [f"{m} {p}" for m, p, h in routes if not isinstance(h.opt.get("permission"), Permission)]
    assert missing == [], f"routes without an access rule: {missing}"


async def test_route_by_role_matrix(admin_api: AdminApi) -> None:
    routes = list(admin_routes(admin_api.app))
    async with admin_api.sessions() as session, session.begin():
        from portal.keys.service import create_key

        proxy_key = (await create_key(session, ACTOR, alias="matrix proxy key")).secret
    mismatches: list[str] = []
    clients = {role.value: admin_api.client(role.value) for role in AdminRole}
    clients["none"] = admin_api.client(None)
    clients["proxy"] = admin_api.client(key=proxy_key)
    try:
        for method, path, handler in routes:
            permission: Permission = handler.opt["permission"]
            url = concrete(path)
            body = {} if method in {"POST", "PUT", "PATCH"} else None
            for who, client in clients.items():
                response = await client.request(method, url, json=body)
                refused = response.status_code == 403 and GUARD_REFUSAL in response.text
                if who == "none":
                    ok = response.status_code == 401
                elif who == "proxy":
                    ok = response.status_code == 403
                elif permission in ROLE_PERMISSIONS[AdminRole(who)]:
                    ok = not refused and response.status_code not in {401, 405, 500}
                else:
                    ok = refused
                if not ok:
                    mismatches.append(f"{who:12} {method:6} {path} ({permission}) -> {response.status_code}")
    finally:
        for client in clients.values():
            await client.aclose()
    assert mismatches == [], "\n".join(mismatches)
