"""The landing page: what this gateway is and where to go next."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response import Template

from portal import __version__
from portal.auth.person import page

__all__ = ["landing"]


@get("/", name="web:landing", include_in_schema=False, opt=page("public"))
async def landing(request: Request[Any, Any, Any]) -> Template:
    """The front page."""
    settings = request.app.state.resources.settings
    return Template(
        template_name="landing.html",
        context={
            "version": __version__,
            "demo": settings.demo,
            "base_url": str(request.base_url).rstrip("/"),
        },
    )
