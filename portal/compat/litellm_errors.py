"""LiteLLM-style errors for the LiteLLM compatible routes, and LiteLLM's extra key header.

Every error is ``{"error": {"message", "type", "param", "code"}}`` with ``code`` the HTTP status as a
string, as LiteLLM's ``ProxyException`` renders it, and never a stack trace:

* 401 ``auth_error`` ("Authentication Error, ...") without a valid admin key or the master key;
* 403 ``auth_error`` when the key's role may not do this;
* 400 ``bad_request_error`` for an invalid body or value (``param`` names the LiteLLM field);
* 404 ``not_found_error`` for an unknown key, user or team;
* 409 ``bad_request_error`` for a duplicate (user email, user id, team id, key value);
* 500 ``internal_server_error`` for anything else (the server log has the details).

LiteLLM clients may send the key in ``x-litellm-api-key`` instead of ``Authorization``:
:func:`litellm_key_header` copies it into ``Authorization`` before the admin guard reads it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.types import ASGIApp, Receive, Scope, Send
from sqlalchemy.exc import IntegrityError

from portal.api.problems import field_errors
from portal.errors import (
    ConflictError,
    DomainError,
    NotFoundError,
    PermissionDeniedError,
    ValidationFailedError,
)

__all__ = ["LITELLM_ERROR_HANDLERS", "litellm_error", "litellm_key_header"]

log = logging.getLogger(__name__)

# portal's field names -> the LiteLLM request fields they come from
_FIELDS = {
    "period": "budget_duration",
    "amount": "max_budget",
    "expires_at": "duration",
    "alias": "key_alias",
    "max_parallel": "max_parallel_requests",
    "external_id": "user_id",
    "email": "user_email",
    "display_name": "user_alias",
    "slug": "team_id",
    "name": "team_alias",
    "tenant_id": "team_id",
    "grace_period_s": "grace_period",
}
_TYPES = {401: "auth_error", 403: "auth_error", 404: "not_found_error", 500: "internal_server_error"}


def litellm_error(
    status: int, message: str, *, error_type: str | None = None, param: str | None = None
) -> Response[dict[str, Any]]:
    """A LiteLLM ``ProxyException`` body with ``status``."""
    kind = error_type or _TYPES.get(status, "bad_request_error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": str(status)}}
    return Response(body, status_code=status)


def _fields(errors: dict[str, str]) -> dict[str, str]:
    return {_FIELDS.get(name, name): message for name, message in errors.items()}


def _details(message: str, errors: dict[str, str]) -> str:
    if not errors:
        return message
    return f"{message}: " + "; ".join(f"{name}: {text}" for name, text in errors.items())


def _domain(request: Request[Any, Any, Any], exc: DomainError) -> Response[dict[str, Any]]:
    if isinstance(exc, ValidationFailedError):
        errors = _fields(exc.fields)
        return litellm_error(400, _details(exc.message, errors), param=next(iter(errors), None))
    if isinstance(exc, PermissionDeniedError):
        return litellm_error(403, f"Authentication Error, {exc.message}")
    if isinstance(exc, NotFoundError):
        return litellm_error(404, exc.message)
    if isinstance(exc, ConflictError):
        return litellm_error(409, exc.message)
    return litellm_error(exc.status_code, exc.message)


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    errors = field_errors(exc)
    return litellm_error(
        400,
        _details("invalid request", errors) if errors else str(exc.detail),
        param=next(iter(errors), None),
    )


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    detail = str(exc.detail)
    if exc.status_code in (401, 403):
        detail = f"Authentication Error, {detail}"
    response = litellm_error(exc.status_code, detail)
    if isinstance(exc, NotAuthorizedException):
        response.headers["www-authenticate"] = "Bearer"
    return response


def _integrity(request: Request[Any, Any, Any], exc: IntegrityError) -> Response[dict[str, Any]]:
    log.info("integrity error on %s: %s", request.url.path, exc.orig)
    return litellm_error(409, "this conflicts with an existing record (a value that must be unique)")


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return litellm_error(500, "Internal Server Error, the server log has the details")


LITELLM_ERROR_HANDLERS: dict[type[Exception] | int, Callable[..., Response[Any]]] = {
    ValidationException: _validation,
    DomainError: _domain,
    HTTPException: _http,
    IntegrityError: _integrity,
    Exception: _internal,
}


def litellm_key_header(app: ASGIApp) -> ASGIApp:
    """Middleware: use ``x-litellm-api-key`` (``sk-...`` or ``Bearer sk-...``) when ``Authorization``
    is absent."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        headers = list(scope.get("headers", []))
        names = {name for name, _ in headers}
        if b"authorization" not in names and b"x-litellm-api-key" in names:
            value = next(v for n, v in headers if n == b"x-litellm-api-key").strip()
            if not value.lower().startswith(b"bearer "):
                value = b"Bearer " + value
            scope["headers"] = [*headers, (b"authorization", value)]
        await app(scope, receive, send)

    return middleware
