"""OpenAI-style error bodies for ``/v1``: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import msgspec

__all__ = ["ProxyError", "error_body"]


class ProxyError(Exception):
    """A refusal of the proxy itself (auth, grants, input, limits), rendered as OpenAI error JSON."""

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str,
        code: str | None = None,
        *,
        param: str | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.code = code
        self.param = param
        self.headers = headers


def error_body(message: str, error_type: str, code: str | None = None, param: str | None = None) -> bytes:
    """The JSON bytes of an OpenAI error object."""
    return msgspec.json.encode(
        {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    )
