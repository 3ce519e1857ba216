"""Compatible admin routes for coo (filled in by issue 5)."""

from __future__ import annotations

from litestar import Router

__all__ = ["compat_router"]


def compat_router() -> Router | None:
    return None
