"""The portal's page router: every page behind the page guard and CSRF protection, with errors
rendered as pages (a signed-out visitor is sent to ``/login``; HTMX requests get ``HX-Redirect``, and
their errors a message in the page's flash area)."""

from __future__ import annotations

import logging
import secrets
import urllib.parse
from collections.abc import Callable
from typing import Any

from litestar import Request, Response, Router
from litestar.config.csrf import CSRFConfig
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.response import Redirect, Template
from litestar.types import ControllerRouterHandler

from portal.api.deps import provide_db
from portal.audit.pages import PAGES as AUDIT_PAGES
from portal.auth.person import SignInRequired, page_guard
from portal.auth.routes import AUTH_ROUTES
from portal.catalog.credential_pages import PAGES as CREDENTIAL_PAGES
from portal.catalog.pages import PAGES as CATALOG_PAGES
from portal.config import Settings
from portal.errors import DomainError
from portal.grants.pages import PAGES as GRANT_PAGES
from portal.keys.pages import PAGES as KEY_PAGES
from portal.spend.log_pages import PAGES as LOG_PAGES
from portal.spend.pages import PAGES as SPEND_PAGES
from portal.tenants.pages import PAGES as TENANT_PAGES
from portal.tenants.self_service import PAGES as SELF_SERVICE_PAGES
from portal.web.forms import error_toast
from portal.web.landing import landing

__all__ = ["CSRF_COOKIE", "CSRF_HEADER", "PAGE_HANDLERS", "web_router"]

log = logging.getLogger(__name__)
CSRF_COOKIE = "portal_csrf"
CSRF_HEADER = "x-csrftoken"
PAGE_ROUTES: list[ControllerRouterHandler] = [
    landing,
    *AUTH_ROUTES,
    *TENANT_PAGES,
    *SELF_SERVICE_PAGES,
    *KEY_PAGES,
    *CATALOG_PAGES,
    *CREDENTIAL_PAGES,
    *GRANT_PAGES,
    *SPEND_PAGES,
    *AUDIT_PAGES,
    *LOG_PAGES,
]


def _is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


def _sign_in(request: Request[Any, Any, Any], exc: SignInRequired) -> Response[Any]:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    login = f"/login?next={urllib.parse.quote(target, safe='')}"
    if _is_htmx(request):
        return Response(b"", status_code=401, headers={"HX-Redirect": login})
    return Redirect(login, status_code=303)


def _error_page(request: Request[Any, Any, Any], status: int, title: str, message: str) -> Template:
    if _is_htmx(request):
        return error_toast(message, status, title=title)
    return Template(
        template_name="errors/page.html",
        context={"title": title, "message": message, "signed_in": False},
        status_code=status,
        headers={"Vary": "HX-Request"},
    )


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if status == 403 and "CSRF" in str(exc.detail):
        message = "This form expired or came from another site. Go back, reload the page and try again."
        return _error_page(request, 403, "Form expired", message)
    titles = {403: "Not allowed", 404: "Not found", 405: "Not allowed", 400: "Bad request"}
    return _error_page(request, status, titles.get(status, "Error"), str(exc.detail))


def _domain(request: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    """A refused change or unknown object that a page did not handle inline: an error page, not a 500."""
    titles = {403: "Not allowed", 404: "Not found", 409: "Conflict", 422: "Invalid input"}
    return _error_page(request, exc.status_code, titles.get(exc.status_code, "Error"), exc.message)


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error_page(request, 500, "Something went wrong", "The error was logged; try again in a moment.")


PAGE_HANDLERS: dict[type[Exception] | int, Callable[..., Response[Any]]] = {
    SignInRequired: _sign_in,
    DomainError: _domain,
    HTTPException: _http,
    Exception: _internal,
}


def web_router(settings: Settings) -> Router:
    """Pages and sign-in routes: the page guard, CSRF on every state-changing request, error pages."""
    csrf = CSRFConfig(
        secret=settings.secret_key or secrets.token_urlsafe(32),
        cookie_name=CSRF_COOKIE,
        header_name=CSRF_HEADER,
        cookie_secure=settings.secure_cookies,
        cookie_samesite="lax",
        cookie_httponly=False,
    )
    return Router(
        path="/",
        route_handlers=PAGE_ROUTES,
        guards=[page_guard],
        middleware=[DefineMiddleware(CSRFMiddleware, config=csrf)],
        exception_handlers=PAGE_HANDLERS,
        dependencies={"db": Provide(provide_db)},
        include_in_schema=False,
    )
