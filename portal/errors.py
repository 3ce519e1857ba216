"""Domain errors raised by services; each door (``/v1``, ``/api``, pages) maps them to its own format.

``NotFoundError`` -> 404, ``ConflictError`` -> 409, ``PermissionDeniedError`` -> 403,
``ValidationFailedError`` -> 422 (with field-level messages).
"""

from __future__ import annotations

__all__ = ["ConflictError", "DomainError", "NotFoundError", "PermissionDeniedError", "ValidationFailedError"]


class DomainError(Exception):
    """Base of the errors a person can act on; ``message`` is shown to them as is."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(DomainError):
    status_code = 404


class ConflictError(DomainError):
    status_code = 409


class PermissionDeniedError(DomainError):
    status_code = 403


class ValidationFailedError(DomainError):
    """Invalid input; ``fields`` maps a field name to what is wrong with it."""

    status_code = 422

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or {}
