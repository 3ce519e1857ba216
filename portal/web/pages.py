"""What every portal page uses: the signed-in person as a service caller, the layout's context
(navigation by role, flash messages), and rendering a whole page or, for htmx, just a fragment.

A page handler calls :func:`render` with its template and, optionally, the fragment template htmx
swaps in; responses carry ``Vary: HX-Request`` so caches keep the two apart. Flash messages survive
one redirect (they live in the session).
"""

from __future__ import annotations

import base64
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request
from litestar.datastructures import Cookie
from litestar.exceptions import PermissionDeniedException
from litestar.response import Redirect, Response, Template

from portal import __version__
from portal.auth.admin import AdminCaller
from portal.auth.person import Person, SignInRequired, current_person
from portal.auth.roles import Permission

__all__ = ["NAV", "Answer", "NavItem", "flash", "is_htmx", "page_caller", "redirect", "render", "signed_in"]


@dataclass(frozen=True, slots=True)
class NavItem:
    """A link of the main navigation, shown to people holding ``permission`` (``None``: to tenant members)."""

    label: str
    href: str
    permission: Permission | None


NAV: tuple[NavItem, ...] = (
    NavItem("My tenants", "/my", None),
    NavItem("Dashboard", "/dashboard", Permission.SPEND_READ),
    NavItem("Tenants", "/tenants", Permission.TENANTS_READ),
    NavItem("Keys", "/keys", Permission.KEYS_READ),
    NavItem("Models", "/models", Permission.CATALOG_READ),
    NavItem("Credentials", "/credentials", Permission.CREDENTIALS_READ),
    NavItem("Grants", "/grants", Permission.GRANTS_READ),
    NavItem("Spend", "/spend", Permission.SPEND_READ),
    NavItem("Logs", "/logs", Permission.LOGS_READ),
    NavItem("Audit", "/audit", Permission.AUDIT_READ),
)
FLASH_KEY = "portal_flash"
Answer = Template | Redirect | Response[bytes]
"""What a form handler returns: a page (or fragment), a redirect, or htmx's ``204`` + ``HX-Redirect``."""
FLASH_COOKIE = "portal_flash"


def _shows(item: NavItem, person: Person) -> bool:
    """A link for what the person may see; one without a permission is the self-service page, shown
    to members of a tenant."""
    return person.can(item.permission) if item.permission else bool(person.memberships)


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


async def signed_in(request: Request[Any, Any, Any]) -> Person:
    """The signed-in person (the page guard already sent everyone else to ``/login``)."""
    person = await current_person(request)
    if person is None:
        raise SignInRequired("sign in to see this page")
    return person


async def page_caller(request: Request[Any, Any, Any], tenant_id: uuid.UUID | None = None) -> AdminCaller:
    """The signed-in person as a caller of the domain services (members: in ``tenant_id`` or their first
    tenant); 403 when they may act nowhere."""
    person = await signed_in(request)
    caller = person.caller(tenant_id)
    if caller is None:
        raise PermissionDeniedException("you are not a member of any tenant yet; ask an administrator")
    return caller


async def flash(request: Request[Any, Any, Any], message: str, kind: str = "ok") -> None:
    """Show ``message`` on the next page this person sees (carried by :func:`redirect` in a short-lived
    cookie, so it needs no database write while the request's transaction is still open)."""
    request.scope.setdefault("state", {}).setdefault(FLASH_KEY, []).append({"message": message, "kind": kind})


def _pending(request: Request[Any, Any, Any]) -> list[dict[str, str]]:
    pending: list[dict[str, str]] = request.scope.get("state", {}).get(FLASH_KEY, [])
    return pending


def _take_flashes(request: Request[Any, Any, Any]) -> tuple[list[dict[str, str]], bool]:
    """Messages to show now: from the cookie a redirect set, and any flashed in this request."""
    messages: list[dict[str, str]] = []
    raw = request.cookies.get(FLASH_COOKIE)
    if raw:
        try:
            decoded = msgspec.json.decode(base64.urlsafe_b64decode(raw.encode()), type=list[dict[str, str]])
            messages = [
                {"message": m.get("message", "")[:500], "kind": m.get("kind", "ok")} for m in decoded[:5]
            ]
        except (ValueError, msgspec.DecodeError):
            messages = []
    return messages + _pending(request), raw is not None


async def render(
    request: Request[Any, Any, Any],
    template: str,
    context: dict[str, Any] | None = None,
    *,
    fragment: str | None = None,
    status_code: int = 200,
) -> Template:
    """The page (layout included), or only ``fragment`` for an htmx request."""
    person = await current_person(request)
    values = dict(context or {})
    values.setdefault("person", person)
    values.setdefault("version", __version__)
    values["nav"] = [item for item in NAV if person is not None and _shows(item, person)]
    values["current_path"] = request.url.path
    if fragment is not None and is_htmx(request):
        return Template(
            template_name=fragment, context=values, status_code=status_code, headers={"Vary": "HX-Request"}
        )
    values["flashes"], had_cookie = _take_flashes(request)
    cookies = [Cookie(key=FLASH_COOKIE, value="", max_age=0, path="/")] if had_cookie else []
    return Template(
        template_name=template,
        context=values,
        status_code=status_code,
        headers={"Vary": "HX-Request"},
        cookies=cookies,
    )


def redirect(request: Request[Any, Any, Any], url: str) -> Redirect | Response[bytes]:
    """Go to ``url`` after a form post (carrying this request's flash messages): ``303``, or for htmx
    ``204`` with ``HX-Redirect`` (an XHR would follow a ``303`` itself and swap the next page in), or
    ``HX-Refresh`` when ``url`` is the page the form is on."""
    cookies = []
    if _pending(request):
        waiting, _ = _take_flashes(request)  # earlier messages not shown yet (redirect after redirect)
        value = base64.urlsafe_b64encode(msgspec.json.encode(waiting[-5:])).decode()
        cookies.append(
            Cookie(key=FLASH_COOKIE, value=value, max_age=60, path="/", httponly=True, samesite="lax")
        )
    if is_htmx(request):
        current = urllib.parse.urlsplit(request.headers.get("hx-current-url", ""))
        target = urllib.parse.urlsplit(url)
        same_page = (current.path, current.query) == (target.path, target.query)
        # a location that differs only by its #fragment would scroll, not load: reload instead
        headers = {"HX-Refresh": "true"} if same_page else {"HX-Redirect": url}
        headers["Vary"] = "HX-Request"
        return Response(b"", status_code=204, headers=headers, cookies=cookies)
    return Redirect(url, status_code=303, headers={"Vary": "HX-Request"}, cookies=cookies)
