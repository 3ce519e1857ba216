"""Mapping upstream failures to UpstreamError, shared by the client and the adapters.

The HTTP client itself is :class:`~portal.proxy.providers.client.UpstreamClient`; :func:`post` and
:func:`open_stream` here only delegate to it.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from portal.proxy.providers.base import Target, UpstreamError

if TYPE_CHECKING:
    from portal.proxy.providers.client import UpstreamClient, UpstreamResponse, UpstreamStreamResponse

__all__ = ["error_from_response", "open_stream", "post", "transport_error"]

_RETRYABLE_4XX = frozenset({408, 425, 429})
_DEFAULT_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_MAX_MESSAGE = 2000


def transport_error(exc: BaseException) -> UpstreamError:
    """Map a transport failure (no HTTP answer, or a broken stream) to a retryable 502/504."""
    if isinstance(exc, TimeoutError):
        return UpstreamError(
            504, f"upstream timed out ({type(exc).__name__})", error_type="timeout", retryable=True
        )
    detail = str(exc) or type(exc).__name__
    return UpstreamError(502, f"upstream connection failed: {detail}", retryable=True)


def _retry_after(headers: Mapping[str, str], details: Any) -> float | None:
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(float(value) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(float(value), 0.0)
        except ValueError:
            pass
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(parsed.timestamp() - time.time(), 0.0)
    if isinstance(details, list):
        for detail in details:
            delay = detail.get("retryDelay") if isinstance(detail, dict) else None
            if isinstance(delay, str) and delay.endswith("s"):
                try:
                    return float(delay[:-1])
                except ValueError:
                    return None
    return None


def _is_type_name(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and value.islower()


def error_from_response(response: UpstreamResponse) -> UpstreamError:
    """Build an :class:`UpstreamError` from an HTTP error answer in any provider's error shape."""
    status = response.status
    message: str | None = None
    error_type: str | None = None
    details: Any = None
    try:
        data: Any = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            message = error.get("message") if isinstance(error.get("message"), str) else None
            error_type = error.get("type") if _is_type_name(error.get("type")) else None
            details = error.get("details")
        elif isinstance(error, str):
            message = error
        if message is None:
            for key in ("message", "Message", "detail"):
                if isinstance(data.get(key), str):
                    message = data[key]
                    break
    if isinstance(details, list) and status == 400:
        reasons = {d.get("reason") for d in details if isinstance(d, dict)}
        if "API_KEY_INVALID" in reasons:
            status = 401
    if message is None:
        message = response.text.strip()[:_MAX_MESSAGE] or response.reason or f"HTTP {status}"
    if error_type is None:
        error_type = _DEFAULT_TYPES.get(status, "upstream_error")
    retryable = status >= 500 or status in _RETRYABLE_4XX
    return UpstreamError(
        status,
        message[:_MAX_MESSAGE],
        error_type=error_type,
        retryable=retryable,
        retry_after=_retry_after(response.headers, details) if retryable else None,
    )


async def post(
    client: UpstreamClient, target: Target, url: str, headers: Mapping[str, str], content: bytes
) -> UpstreamResponse:
    """POST and return a successful, fully read response; raise :class:`UpstreamError` otherwise."""
    return await client.post(target, url, headers, content)


async def open_stream(
    client: UpstreamClient, target: Target, url: str, headers: Mapping[str, str], content: bytes
) -> UpstreamStreamResponse:
    """POST and return a successful response whose body is still unread (the caller must close it)."""
    return await client.open_stream(target, url, headers, content)
