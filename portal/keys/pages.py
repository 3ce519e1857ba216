"""Portal pages of the keys domain (issue 7)."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

__all__ = ["PAGES"]

PAGES: list[ControllerRouterHandler] = []
