"""Sign-in and sign-out routes: ``/login`` (every configured method on one page), local and LDAP
form posts, the OIDC redirect and callback, ``/logout``, and "sign out everywhere" on ``/account``.

Every attempt is throttled per account and per client address before any password is checked, and
audited (``auth.login`` / ``auth.login_failed`` / ``auth.logout``). Errors are shown inline on the
sign-in page with a 4xx status; an unreachable directory or provider is a clear message, never a 500.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Annotated, Any

from litestar import Request, get, post
from litestar.datastructures import Cookie
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Redirect, Response, Template

from portal import audit
from portal.auth import ldap as ldap_auth
from portal.auth import oidc
from portal.auth.identity import Identity, LoginFailed
from portal.auth.local import LOCAL_PROVIDER, authenticate_local
from portal.auth.login import record_failure, sign_in
from portal.auth.person import Person, current_person, page
from portal.auth.sessions import SessionManager
from portal.auth.throttle import LoginThrottle
from portal.config import OidcProviderConfig, Settings
from portal.state import AppResources
from portal.web.pages import render

__all__ = ["AUTH_ROUTES", "safe_next"]

OIDC_PENDING = "oidc_pending"
PENDING_TTL_S = 600


def safe_next(target: str | None) -> str:
    """Only a path on this site (``/...``, not ``//host``) may be the post-sign-in destination."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/account"
    return target


def _settings(request: Request[Any, Any, Any]) -> Settings:
    resources: AppResources = request.app.state.resources
    return resources.settings


def _methods(settings: Settings) -> dict[str, Any]:
    return {
        "oidc": [{"name": p.name, "label": p.label or p.name} for p in settings.oidc_providers],
        "ldap": settings.ldap is not None,
        "local": settings.local_login,
    }


def _login_page(
    request: Request[Any, Any, Any],
    *,
    error: str | None = None,
    status: int = 200,
    method: str = "",
    username: str = "",
) -> Template:
    settings = _settings(request)
    return Template(
        template_name="auth/login.html",
        context={
            "methods": _methods(settings),
            "error": error,
            "method": method,
            "username": username,
            "next": safe_next(request.query_params.get("next")),
        },
        status_code=status,
    )


def _client(request: Request[Any, Any, Any]) -> tuple[str | None, str | None]:
    return (request.client.host if request.client else None, request.headers.get("x-request-id"))


async def _finish(
    request: Request[Any, Any, Any], identity: Identity, target: str, extra: dict[str, Any]
) -> Response[Any]:
    """Create/update the user, start a fresh session and go to ``target``."""
    settings = _settings(request)
    resources: AppResources = request.app.state.resources
    ip, request_id = _client(request)
    async with resources.sessions() as session, session.begin():
        user = await sign_in(session, identity, settings.group_mappings, ip=ip, request_id=request_id)
    manager: SessionManager = request.app.state.session_manager
    cookie = await manager.start(request, user.id, {"provider": identity.provider, **extra})
    return Redirect(safe_next(target), status_code=303, cookies=[cookie])


async def _fail(
    request: Request[Any, Any, Any], provider: str, failure: LoginFailed, *, method: str, account: str | None
) -> Template:
    settings = _settings(request)
    resources: AppResources = request.app.state.resources
    ip, request_id = _client(request)
    async with resources.sessions() as session, session.begin():
        await record_failure(session, provider, failure, ip=ip, request_id=request_id)
    throttle: LoginThrottle = request.app.state.login_throttle
    if account and failure.reason != "unavailable":
        await throttle.failed(f"{method}:{account}", ip)
    status = 503 if failure.reason == "unavailable" else 401
    del settings
    return _login_page(request, error=failure.message, status=status, method=method, username=account or "")


async def _throttled(request: Request[Any, Any, Any], method: str, account: str) -> Template | None:
    throttle: LoginThrottle = request.app.state.login_throttle
    ip, _ = _client(request)
    wait = await throttle.blocked_for(f"{method}:{account}", ip)
    if wait is None:
        return None
    minutes = max(1, round(wait / 60))
    return _login_page(
        request,
        error=f"too many failed sign-ins; try again in {minutes} minute{'s' if minutes > 1 else ''}",
        status=429,
        method=method,
        username=account,
    )


async def _audit_person(
    request: Request[Any, Any, Any], person: Person, action: str, after: dict[str, Any] | None = None
) -> None:
    """Audit something a signed-in person did to their own sessions."""
    resources: AppResources = request.app.state.resources
    ip, request_id = _client(request)
    actor = audit.Actor(type="user", id=str(person.user_id), label=person.label, ip=ip, request_id=request_id)
    async with resources.sessions() as session, session.begin():
        await audit.record(session, actor, action, target_type="user", target_id=person.user_id, after=after)


FormData = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]


@get("/login", name="auth:login", opt=page("public"), include_in_schema=False)
async def login_page(request: Request[Any, Any, Any]) -> Template | Redirect:
    """The sign-in page: one button per OIDC provider, the LDAP and local forms when enabled."""
    if await current_person(request) is not None:
        return Redirect(safe_next(request.query_params.get("next")), status_code=303)
    return _login_page(request)


async def _password_login(
    request: Request[Any, Any, Any], data: dict[str, str], method: str
) -> Response[Any]:
    username = (data.get("username") or "").strip()
    password = data.get("password") or ""
    target = data.get("next") or "/account"
    blocked = await _throttled(request, method, username.lower())
    if blocked is not None:
        return blocked
    settings = _settings(request)
    provider = method
    try:
        if method == "ldap":
            if settings.ldap is None:
                raise LoginFailed("directory sign-in is not configured", reason="disabled", username=username)
            identity = await ldap_auth.authenticate(settings.ldap, username, password)
        else:
            if not settings.local_login:
                raise LoginFailed("local sign-in is turned off", reason="disabled", username=username)
            resources: AppResources = request.app.state.resources
            async with resources.sessions() as session:
                identity = await authenticate_local(session, username, password)
            provider = LOCAL_PROVIDER
        response = await _finish(request, identity, target, {})
    except LoginFailed as failure:
        return await _fail(request, provider, failure, method=method, account=username.lower() or None)
    throttle: LoginThrottle = request.app.state.login_throttle
    await throttle.succeeded(f"{method}:{username.lower()}")
    return response


@post("/auth/local", name="auth:local", opt=page("public"), include_in_schema=False, status_code=303)
async def local_login(request: Request[Any, Any, Any], data: FormData) -> Response[Any]:
    """Break-glass sign-in with a local account."""
    return await _password_login(request, data, "local")


@post("/auth/ldap", name="auth:ldap", opt=page("public"), include_in_schema=False, status_code=303)
async def ldap_login(request: Request[Any, Any, Any], data: FormData) -> Response[Any]:
    """Sign-in against the LDAP directory."""
    return await _password_login(request, data, "ldap")


def _provider(request: Request[Any, Any, Any], name: str) -> OidcProviderConfig | None:
    return next((p for p in _settings(request).oidc_providers if p.name == name), None)


def _redirect_uri(request: Request[Any, Any, Any], name: str) -> str:
    return f"{str(request.base_url).rstrip('/')}/auth/oidc/{urllib.parse.quote(name)}/callback"


@get("/auth/oidc/{name:str}/login", name="auth:oidc-login", opt=page("public"), include_in_schema=False)
async def oidc_login(
    request: Request[Any, Any, Any], name: FromPath[str], next: FromQuery[str | None] = None
) -> Response[Any]:
    """Send the browser to the provider (code flow with PKCE; state and nonce kept server-side)."""
    provider = _provider(request, name)
    if provider is None:
        return _login_page(request, error=f"unknown sign-in provider {name!r}", status=404)
    try:
        url, pending = await oidc.begin_login(provider, _redirect_uri(request, name))
    except LoginFailed as failure:
        return await _fail(request, f"oidc:{name}", failure, method="oidc", account=None)
    manager: SessionManager = request.app.state.session_manager
    state, cookie = await manager.begin_anonymous(request)
    now = time.time()
    flows = {
        k: v
        for k, v in state.data.get(OIDC_PENDING, {}).items()
        if now - float(v.get("at", 0)) < PENDING_TTL_S
    }
    flows[pending["state"]] = {**pending, "at": str(now), "next": safe_next(next)}
    state.data[OIDC_PENDING] = flows
    await manager.save(state)
    return Redirect(url, status_code=303, cookies=[cookie] if cookie else [])


@get("/auth/oidc/{name:str}/callback", name="auth:oidc-callback", opt=page("public"), include_in_schema=False)
async def oidc_callback(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[Any]:
    """The provider's redirect back: check state, exchange the code, validate the id_token, sign in."""
    provider = _provider(request, name)
    if provider is None:
        return _login_page(request, error=f"unknown sign-in provider {name!r}", status=404)
    manager: SessionManager = request.app.state.session_manager
    state = await manager.load(request)
    params = dict(request.query_params)
    flows: dict[str, dict[str, str]] = dict(state.data.get(OIDC_PENDING, {})) if state is not None else {}
    pending = flows.pop(params.get("state", ""), None)
    if state is not None:
        state.data[OIDC_PENDING] = flows
        await manager.save(state)  # a state is good for one callback only
    try:
        if pending is None or time.time() - float(pending.get("at", 0)) > PENDING_TTL_S:
            raise LoginFailed(
                "this sign-in link is no longer valid (expired, used already, or from another browser); "
                "start again",
                reason="invalid_state",
            )
        result = await oidc.finish_login(provider, pending, params)
        extra = {"oidc_provider": name, "id_token": result.id_token}
        return await _finish(request, result.identity, pending.get("next", "/account"), extra)
    except LoginFailed as failure:
        return await _fail(request, f"oidc:{name}", failure, method="oidc", account=None)


@post("/logout", name="auth:logout", opt=page("public"), include_in_schema=False, status_code=303)
async def logout(request: Request[Any, Any, Any]) -> Redirect:
    """Sign out this browser (and at the OIDC provider when it supports RP-initiated logout)."""
    manager: SessionManager = request.app.state.session_manager
    person = await current_person(request)
    state = await manager.load(request)
    provider_name = state.data.get("oidc_provider") if state is not None else None
    id_token = state.data.get("id_token") if state is not None else None
    cookie = await manager.end(request)
    target = "/login"
    if person is not None:
        await _audit_person(request, person, "auth.logout")
        provider = _provider(request, provider_name) if isinstance(provider_name, str) else None
        if provider is not None:
            login = f"{str(request.base_url).rstrip('/')}/login"
            try:
                hint = id_token if isinstance(id_token, str) else None
                target = await oidc.logout_url(provider, hint, login) or target
            except LoginFailed:
                target = "/login"
    return Redirect(target, status_code=303, cookies=[cookie])


@get("/account", name="auth:account", opt=page("signed_in"), include_in_schema=False)
async def account(request: Request[Any, Any, Any]) -> Template:
    """Who am I: name, role, memberships; sign out here or everywhere."""
    return await render(request, "auth/account.html")


@post(
    "/account/sign-out-everywhere",
    name="auth:sign-out-everywhere",
    opt=page("signed_in"),
    include_in_schema=False,
)
async def sign_out_everywhere(request: Request[Any, Any, Any]) -> Redirect:
    """End every session of this person, in every browser."""
    person = await current_person(request)
    assert person is not None  # the page guard let only signed-in people through
    manager: SessionManager = request.app.state.session_manager
    ended = await manager.end_all(person.user_id)
    await _audit_person(request, person, "auth.logout_everywhere", {"sessions_ended": ended})
    clear: Cookie = await manager.end(request)
    return Redirect("/login", status_code=303, cookies=[clear])


AUTH_ROUTES = [
    login_page,
    local_login,
    ldap_login,
    oidc_login,
    oidc_callback,
    logout,
    account,
    sign_out_everywhere,
]
