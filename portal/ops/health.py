"""``/healthz`` (the process is up) and ``/readyz`` (its dependencies answer and the schema is at head)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request, get
from litestar.response import Response
from sqlalchemy import text

from portal.db.migrate import current_revisions, head_revisions
from portal.state import AppResources

__all__ = ["healthz", "readyz"]

CHECK_TIMEOUT_S = 2.0


async def _timed(check: Callable[[], Awaitable[str | None]]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_S)
    except TimeoutError:
        return {"ok": False, "error": f"no answer within {CHECK_TIMEOUT_S:g} s"}
    except Exception as exc:  # any failure of a dependency makes the check fail, with its reason
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    result: dict[str, Any] = {
        "ok": detail is None,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }
    if detail is not None:
        result["error"] = detail
    return result


async def readiness(resources: AppResources) -> dict[str, dict[str, Any]]:
    """Run every readiness check; one entry per check."""

    async def database() -> str | None:
        async with resources.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return None

    async def migrations() -> str | None:
        current = await current_revisions(resources.engine)
        heads = head_revisions()
        if current != heads:
            at = sorted(current) or "nothing"
            return f"database schema at {at}, code expects {sorted(heads)}: run `portal migrate`"
        return None

    async def redis() -> str | None:
        assert resources.redis is not None
        await resources.redis.ping()
        return None

    checks: dict[str, Callable[[], Awaitable[str | None]]] = {"database": database, "migrations": migrations}
    if resources.redis is not None:
        checks["redis"] = redis
    results = await asyncio.gather(*(_timed(c) for c in checks.values()))
    return dict(zip(checks, results, strict=True))


@get(["/healthz", "/health"], name="ops:healthz", include_in_schema=False, sync_to_thread=False)
def healthz() -> dict[str, str]:
    """Liveness: the process answers (``/health`` too, as COO-LLM's users probe it)."""
    return {"status": "ok"}


@get("/readyz", name="ops:readyz", include_in_schema=False)
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """Readiness: 200 when every check passes, else 503; one JSON entry per check."""
    resources: AppResources = request.app.state.resources
    checks = await readiness(resources)
    ready = all(c["ok"] for c in checks.values())
    return Response(
        {"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503
    )
