"""Portal pages of the catalog domain (issue 7)."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

__all__ = ["PAGES"]

PAGES: list[ControllerRouterHandler] = []
