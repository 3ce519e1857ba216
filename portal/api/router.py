"""The ``/api`` router: every domain's controller behind the admin guard, with problem JSON errors,
and the OpenAPI document (``/api/docs/openapi.json``) with its docs page (``/api/docs``)."""

from __future__ import annotations

from litestar import Router
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ControllerRouterHandler

from portal.api.deps import ADMIN_DEPENDENCIES
from portal.api.problems import PROBLEM_HANDLERS
from portal.audit.api import ROUTES as AUDIT_ROUTES
from portal.auth.admin import admin_guard
from portal.catalog.api import ROUTES as CATALOG_ROUTES
from portal.grants.api import ROUTES as GRANT_ROUTES
from portal.keys.api import ROUTES as KEY_ROUTES
from portal.limits.api import ROUTES as LIMIT_ROUTES
from portal.spend.api import ROUTES as SPEND_ROUTES
from portal.tenants.api import ROUTES as TENANT_ROUTES
from portal.users.api import ROUTES as USER_ROUTES

__all__ = ["API_ROUTES", "api_router", "openapi_config"]

# Each domain's ``api.py`` owns its routes; this list only gathers them.
API_ROUTES: list[ControllerRouterHandler] = [
    *TENANT_ROUTES,
    *USER_ROUTES,
    *KEY_ROUTES,
    *CATALOG_ROUTES,
    *GRANT_ROUTES,
    *LIMIT_ROUTES,
    *SPEND_ROUTES,
    *AUDIT_ROUTES,
]


def api_router() -> Router:
    return Router(
        path="/api",
        route_handlers=API_ROUTES,
        guards=[admin_guard],
        dependencies=ADMIN_DEPENDENCIES,
        exception_handlers=PROBLEM_HANDLERS,
        security=[{"adminKey": []}],
    )


def openapi_config(version: str) -> OpenAPIConfig:
    """OpenAPI for the admin API; the docs page loads its script and styles from ``/static``."""
    return OpenAPIConfig(
        title="portal admin API",
        version=version,
        description=(
            "Manage tenants, users, keys, models, grants, budgets and limits; query spend, request "
            "logs and the audit log. Authenticate with an admin key: `Authorization: Bearer <key>`."
        ),
        path="/api/docs",
        render_plugins=[
            SwaggerRenderPlugin(
                path="/",
                js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
                css_url="/static/vendor/swagger-ui/swagger-ui.css",
                standalone_preset_js_url="/static/vendor/swagger-ui/swagger-ui-standalone-preset.js",
                favicon="<link rel='icon' href='/static/vendor/swagger-ui/favicon-32x32.png'>",
            )
        ],
        components=Components(
            security_schemes={
                "adminKey": SecurityScheme(type="http", scheme="bearer", description="an admin API key")
            }
        ),
    )
