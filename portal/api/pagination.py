"""Cursor pagination: an opaque cursor naming the last row seen; the next page starts after it.

Lists are ordered newest first by a unique, monotonic id (UUIDv7 or an autoincrement), so a page
never repeats or skips a row when rows are added meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import msgspec

from portal.errors import ValidationFailedError

__all__ = [
    "MAX_LIMIT",
    "Page",
    "check_limit",
    "cursor_int",
    "cursor_uuid",
    "decode_cursor",
    "encode_cursor",
    "page_of",
]

T = TypeVar("T")
MAX_LIMIT = 1000


class Page(msgspec.Struct, Generic[T]):
    """One page: ``items`` and the cursor of the next page (``null`` on the last one)."""

    items: list[T]
    next_cursor: str | None = None


def encode_cursor(value: object) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    """The value inside ``cursor``; 422 for a cursor this API did not hand out."""
    if not cursor:
        return None
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise _bad_cursor() from exc


R = TypeVar("R")


def page_of(
    rows: Sequence[R], limit: int, cursor_of: Callable[[R], object], view: Callable[[R], T]
) -> Page[T]:
    """A page from ``limit + 1`` fetched rows (the extra row only tells that there is a next page);
    ``cursor_of`` gives a row's cursor value, ``view`` its API shape."""
    items = [view(row) for row in rows[:limit]]
    if len(rows) > limit:
        return Page(items=items, next_cursor=encode_cursor(cursor_of(rows[limit - 1])))
    return Page(items=items)


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailedError("invalid limit", {"limit": f"between 1 and {MAX_LIMIT}"})
    return limit


def _bad_cursor() -> ValidationFailedError:
    return ValidationFailedError("invalid cursor", {"cursor": "use next_cursor from a previous page"})


def cursor_uuid(cursor: str | None) -> uuid.UUID | None:
    """The UUID a cursor carries (lists keyed by UUIDv7 ids)."""
    value = decode_cursor(cursor)
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise _bad_cursor() from exc


def cursor_int(cursor: str | None) -> int | None:
    """The integer a cursor carries (lists keyed by autoincrement ids: logs, audit events)."""
    value = decode_cursor(cursor)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise _bad_cursor() from exc
