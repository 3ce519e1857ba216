"""``GET /metrics``: the Prometheus text exposition, as a small ASGI app (no framework on the way).

Access: with ``PORTAL_METRICS_TOKEN`` set, a scrape must send ``Authorization: Bearer <token>``
(``401`` otherwise). Which listener serves it is decided by :class:`portal.app.FastPath`.
Budgets: ``portal_budget_remaining`` is read from the database at scrape time (one query); if the
database does not answer, the scrape still succeeds without that family.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.db.models import ApiKey, Budget, Tenant, User
from portal.ops.metrics import BudgetRow, exposition
from portal.timeutil import utcnow

__all__ = ["MetricsApp", "budget_rows"]

log = logging.getLogger(__name__)
_CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
_BUDGET_TIMEOUT_S = 2.0

Send = Callable[[dict[str, Any]], Awaitable[None]]


async def budget_rows(sessions: async_sessionmaker[AsyncSession]) -> list[BudgetRow]:
    """(subject type, subject, unit, remaining) of every budget; a key is named as in the client
    metrics (alias, else display prefix; the prefix when two keys share an alias)."""
    async with sessions() as session:
        rows = (
            await session.execute(
                select(
                    Budget.subject_type,
                    Budget.subject_id,
                    Budget.kind,
                    Budget.amount,
                    Budget.used,
                    Budget.reset_at,
                    Tenant.slug,
                    User.email,
                    User.external_id,
                    ApiKey.alias,
                    ApiKey.key_prefix,
                )
                .outerjoin(Tenant, and_(Budget.subject_type == "tenant", Tenant.id == Budget.subject_id))
                .outerjoin(User, and_(Budget.subject_type == "user", User.id == Budget.subject_id))
                .outerjoin(ApiKey, and_(Budget.subject_type == "key", ApiKey.id == Budget.subject_id))
                .order_by(Budget.subject_type, Budget.subject_id, Budget.kind)
            )
        ).all()
    now = utcnow()
    out: list[BudgetRow] = []
    seen: set[tuple[str, str, str]] = set()
    for kind, subject_id, unit, amount, used, reset_at, slug, email, external_id, alias, prefix in rows:
        name = slug or email or external_id or alias or prefix or str(subject_id)
        if (kind, name, unit) in seen and prefix:
            name = prefix
        seen.add((kind, name, unit))
        ended = reset_at is not None and reset_at <= now
        remaining = amount if ended else amount - used
        out.append((kind, name, unit, float(remaining)))
    return out


class MetricsApp:
    """ASGI app answering ``GET /metrics``; ``sessions_of`` gives the database session factory (or
    ``None`` before start-up)."""

    def __init__(
        self, token: str | None, sessions_of: Callable[[], async_sessionmaker[AsyncSession] | None]
    ) -> None:
        self._token = f"Bearer {token}".encode() if token else None
        self._sessions_of = sessions_of

    def authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """Whether the scrape carries the configured bearer token (always, when none is configured)."""
        if self._token is None:
            return True
        for name, value in headers:
            if name == b"authorization":
                return hmac.compare_digest(value.strip(), self._token)
        return False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["method"] not in {"GET", "HEAD"}:
            await _answer(send, 405, b"method not allowed\n", b"text/plain")
            return
        if not self.authorized(scope["headers"]):
            await _answer(send, 401, b"a bearer token is required\n", b"text/plain")
            return
        budgets: list[BudgetRow] | None = None
        sessions = self._sessions_of()
        if sessions is not None:
            try:
                budgets = await asyncio.wait_for(budget_rows(sessions), _BUDGET_TIMEOUT_S)
            except Exception as exc:  # the scrape still answers without the budget family
                log.warning("metrics: could not read budgets: %s", exc)
        body = exposition(budgets)
        await _answer(send, 200, b"" if scope["method"] == "HEAD" else body, _CONTENT_TYPE)


async def _answer(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
