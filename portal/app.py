"""The application factory: ``create_app(settings)`` assembles one Litestar app. No I/O at import.

Resources that do I/O (database engine, Redis) are created in the lifespan, when the server starts,
and closed when it stops.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, asgi
from litestar.logging.config import LoggingConfig
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from litestar.types import Receive, Scope, Send
from redis.asyncio import Redis

from portal.config import Settings, load_settings
from portal.db.engine import create_engine, create_session_factory
from portal.ops.health import healthz, readyz
from portal.paths import STATIC_DIR, TEMPLATES_DIR
from portal.proxy.gateway import Gateway
from portal.proxy.handlers import ProxyApp
from portal.state import AppResources
from portal.web.landing import landing

__all__ = ["create_app", "create_app_from_env"]


def create_app(settings: Settings) -> Litestar:
    """Build the app for ``settings``."""
    holder: dict[str, Gateway] = {}
    proxy = ProxyApp(lambda: holder["gateway"])

    @asgi("/v1", is_mount=True, copy_scope=False, name="proxy", include_in_schema=False)
    async def proxy_mount(scope: Scope, receive: Receive, send: Send) -> None:
        await proxy(scope, receive, send)  # type: ignore[arg-type]

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = create_engine(settings)
        redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
        sessions = create_session_factory(engine)
        gateway = Gateway(settings, sessions)
        app.state.resources = AppResources(settings=settings, engine=engine, sessions=sessions, redis=redis)
        app.state.gateway = holder["gateway"] = gateway
        await gateway.start()
        try:
            yield
        finally:
            await gateway.close()
            if redis is not None:
                await redis.aclose()
            await engine.dispose()

    return Litestar(
        route_handlers=[
            landing,
            proxy_mount,
            healthz,
            readyz,
            create_static_files_router(path="/static", directories=[STATIC_DIR], name="static"),
        ],
        lifespan=[lifespan],
        template_config=TemplateConfig(directory=TEMPLATES_DIR, engine=JinjaTemplateEngine),
        logging_config=LoggingConfig(log_exceptions="always", disable_stack_trace={404}),
        debug=False,
    )


def create_app_from_env() -> Litestar:
    """Factory for ASGI servers (``uvicorn --factory portal.app:create_app_from_env``)."""
    return create_app(load_settings())
