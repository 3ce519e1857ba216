"""Problem JSON (RFC 9457) for every error on ``/api``: a 4xx with a message a person understands,
field-level messages on 422, and never a stack trace.

``{"type", "title", "status", "detail", "instance", "errors"?: {field: message}}`` with
``Content-Type: application/problem+json``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from sqlalchemy.exc import IntegrityError

from portal.errors import DomainError, ValidationFailedError

__all__ = ["PROBLEM_HANDLERS", "field_errors", "problem"]

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"


def problem(
    status: int, detail: str, *, instance: str = "", errors: Mapping[str, str] | None = None
) -> Response[dict[str, Any]]:
    """A problem response."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = dict(errors)
    return Response(body, status_code=status, media_type=PROBLEM_JSON)


def field_errors(exc: ValidationException) -> dict[str, str]:
    """Litestar's validation details as ``{field: message}`` (``body`` for a malformed body)."""
    errors: dict[str, str] = {}
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if not isinstance(item, dict):
            continue
        key = str(item.get("key") or item.get("source") or "body")
        if key == "data":
            key = "body"
        message = str(item.get("message", "invalid value"))
        errors[key] = _plain(message)
    return errors


def _plain(message: str) -> str:
    """msgspec's messages, in slightly plainer words."""
    message = message.replace("Object contains unknown field", "unknown field")
    message = message.replace("Object missing required field", "missing required field")
    return message.replace("`", "'")


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    errors = field_errors(exc)
    if not errors:
        return problem(400, str(exc.detail), instance=request.url.path)
    detail = "; ".join(f"{k}: {v}" for k, v in errors.items())
    return problem(422, f"invalid request: {detail}", instance=request.url.path, errors=errors)


def _domain(request: Request[Any, Any, Any], exc: DomainError) -> Response[dict[str, Any]]:
    errors = exc.fields if isinstance(exc, ValidationFailedError) else None
    return problem(exc.status_code, exc.message, instance=request.url.path, errors=errors)


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    response = problem(exc.status_code, str(exc.detail), instance=request.url.path)
    if exc.status_code == 401:
        response.headers["www-authenticate"] = "Bearer"
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def _integrity(request: Request[Any, Any, Any], exc: IntegrityError) -> Response[dict[str, Any]]:
    log.info("integrity error on %s: %s", request.url.path, exc.orig)
    return problem(409, "this conflicts with an existing record (a name or value that must be unique)")


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "internal error; the server log has the details", instance=request.url.path)


PROBLEM_HANDLERS: dict[type[Exception] | int, Callable[..., Response[Any]]] = {
    ValidationException: _validation,
    DomainError: _domain,
    HTTPException: _http,
    IntegrityError: _integrity,
    Exception: _internal,
}
