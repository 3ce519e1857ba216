"""The limiter the proxy talks to: estimate, admit (reserve at every level), settle, report usage.

Backend failures (Redis unreachable) fail closed by default: the call is refused with 503 and a
clear message; with ``limits_fail_open`` it goes through unmetered instead. Soft thresholds crossed
while settling are queued to :class:`ThresholdNotifier`, which audits and calls the webhook once per
period per budget (a compare-and-set in the database decides which instance does it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from decimal import Decimal
from typing import Any, Protocol

import httpx
from redis.exceptions import RedisError
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal import audit
from portal.db.models import Budget
from portal.limits.model import Admission, LimitPlan, Ticket, Window, from_nano, to_nano
from portal.timeutil import utcnow

__all__ = ["Backend", "Limiter", "LimiterUnavailable", "ThresholdNotifier"]

log = logging.getLogger(__name__)


class LimiterUnavailable(Exception):
    """The limiter backend cannot be reached and the configuration says to fail closed."""


class Backend(Protocol):
    name: str

    async def admit(
        self, plan: LimitPlan, request_id: str, cost: int, tokens: int, now: dt.datetime
    ) -> Admission: ...

    async def settle(self, ticket: Ticket, cost: int, tokens: int) -> list[tuple[Window, int, int]]: ...

    async def usage(self, plan: LimitPlan, now: dt.datetime) -> dict[str, tuple[int, int]]: ...

    async def reset(self, budget_id: str) -> None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


_BACKEND_ERRORS = (RedisError, OSError, TimeoutError)


class ThresholdNotifier:
    """Audits soft-threshold crossings and POSTs the budget's webhook, once per period per budget."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], client: httpx.AsyncClient | None = None
    ) -> None:
        self._sessions = sessions
        self._client = client
        self._tasks: set[asyncio.Task[None]] = set()

    def crossed(self, window: Window, before: int, after: int) -> None:
        task = asyncio.create_task(self._notify(window, before, after))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(self, window: Window, before: int, after: int) -> None:
        spec = window.spec
        budget_id = uuid.UUID(spec.id)
        payload: dict[str, Any] = {
            "event": "budget.soft_threshold",
            "budget_id": spec.id,
            "subject_type": spec.level,
            "kind": spec.kind,
            "threshold": spec.soft_threshold,
            "amount": str(from_nano(spec.amount)) if spec.kind == "usd" else spec.amount,
            "used": str(from_nano(after)) if spec.kind == "usd" else after,
            "period_start": window.start.isoformat() if window.start else None,
            "period_end": window.end.isoformat() if window.end else None,
        }
        webhook: str | None = None
        try:
            async with self._sessions() as session, session.begin():
                period_start = window.start or dt.datetime.min.replace(tzinfo=dt.UTC)
                result = await session.execute(
                    update(Budget)
                    .where(
                        Budget.id == budget_id,
                        or_(Budget.soft_notified_at.is_(None), Budget.soft_notified_at < period_start),
                    )
                    .values(soft_notified_at=utcnow())
                )
                if result.rowcount != 1:  # type: ignore[attr-defined]
                    return
                await audit.record(
                    session,
                    audit.SYSTEM,
                    "budget.soft_threshold",
                    target_type="budget",
                    target_id=spec.id,
                    after=payload,
                )
                webhook = await session.scalar(select(Budget.webhook_url).where(Budget.id == budget_id))
        except Exception:  # notifications must never disturb the request path
            log.warning("soft threshold notification failed for budget %s", spec.id, exc_info=True)
            return
        if webhook:
            try:
                client = self._client or httpx.AsyncClient(timeout=5.0, trust_env=False)
                response = await client.post(webhook, json=payload, timeout=5.0)
                if self._client is None:
                    await client.aclose()
                if response.status_code >= 400:
                    log.warning("budget webhook %s answered %s", webhook, response.status_code)
            except httpx.HTTPError as exc:
                log.warning("budget webhook %s failed: %s", webhook, exc)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class Limiter:
    """Admission and settlement of calls against a principal's :class:`LimitPlan`."""

    def __init__(
        self,
        backend: Backend,
        notifier: ThresholdNotifier | None = None,
        *,
        fail_open: bool = False,
        default_max_tokens: int = 1024,
    ) -> None:
        self.backend = backend
        self.notifier = notifier
        self.fail_open = fail_open
        self.default_max_tokens = default_max_tokens

    def completion_allowance(self, body: dict[str, Any]) -> int:
        """The completion tokens a request may use: its ``max_tokens`` (or ``max_completion_tokens``),
        else the configured default."""
        for name in ("max_completion_tokens", "max_tokens"):
            value = body.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return self.default_max_tokens

    @staticmethod
    def estimate(
        prompt_tokens: int, completion_tokens: int, input_price: Decimal, output_price: Decimal
    ) -> tuple[int, int]:
        """(nano-dollars, tokens) to reserve for a call."""
        cost = (input_price * prompt_tokens + output_price * completion_tokens) / Decimal(1_000_000)
        return to_nano(cost), prompt_tokens + completion_tokens

    async def admit(
        self, plan: LimitPlan, request_id: str, cost: int, tokens: int, now: dt.datetime | None = None
    ) -> Admission:
        """Reserve ``cost`` and ``tokens`` at every level, or say which limit refuses."""
        try:
            return await self.backend.admit(plan, request_id, cost, tokens, now or utcnow())
        except _BACKEND_ERRORS as exc:
            if self.fail_open:
                log.warning("limits backend unavailable (%s); admitting unmetered (limits_fail_open)", exc)
                return Admission(None)
            raise LimiterUnavailable(str(exc)) from exc

    async def settle(self, ticket: Ticket, cost: Decimal, tokens: int) -> None:
        """Turn the reservation into actual usage (exactly once)."""
        if ticket.settled:
            return
        ticket.settled = True
        try:
            changes = await self.backend.settle(ticket, to_nano(cost), tokens)
        except _BACKEND_ERRORS as exc:
            log.error("limits backend unavailable while settling %s: %s", ticket.request_id, exc)
            return
        if self.notifier is None:
            return
        for window, before, after in changes:
            threshold = window.spec.soft_threshold
            if threshold is None:
                continue
            mark = window.spec.amount * threshold
            if before < mark <= after:
                self.notifier.crossed(window, before, after)

    async def usage(self, plan: LimitPlan, now: dt.datetime | None = None) -> dict[str, tuple[int, int]]:
        return await self.backend.usage(plan, now or utcnow())
