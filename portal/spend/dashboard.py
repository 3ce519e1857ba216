"""What the dashboard and spend pages add to :mod:`portal.spend.queries`: the error rate and p95
latency of the request log over a period, budgets close to their limit, and day buckets folded into
weeks and months."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from portal.db.models import ApiKey, Budget, RequestLog, SubjectType, Tenant, User
from portal.limits.budgets import list_budgets

__all__ = [
    "GRANULARITIES",
    "BudgetUsage",
    "LogSummary",
    "budgets_near_limit",
    "log_summary",
    "period_start",
    "periods",
]

GRANULARITIES = ("day", "week", "month")
NEAR_LIMIT = Decimal("0.8")


@dataclass(slots=True)
class LogSummary:
    """Requests of the request log in a period, how many failed (status 400 and above) and the
    95th percentile latency (nearest rank; ``None`` without requests)."""

    requests: int
    errors: int
    p95_latency_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(slots=True)
class BudgetUsage:
    budget: Budget
    ratio: Decimal
    subject: str = ""
    """The subject's tenant slug, user email or key alias/prefix."""

    @property
    def percent(self) -> int:
        return int(self.ratio * 100)


async def log_summary(
    session: AsyncSession, *, tenant_id: uuid.UUID | None, start: dt.datetime, end: dt.datetime
) -> LogSummary:
    """Requests, failures and p95 latency of the request logs from ``start`` to ``end`` (inclusive)."""
    filters: list[ColumnElement[bool]] = [RequestLog.created_at >= start, RequestLog.created_at <= end]
    if tenant_id is not None:
        filters.append(RequestLog.tenant_id == tenant_id)
    count, failed = (
        await session.execute(
            select(
                func.count(RequestLog.id), func.sum(case((RequestLog.status_code >= 400, 1), else_=0))
            ).where(*filters)
        )
    ).one()
    count = int(count or 0)
    p95: float | None = None
    if count:
        rank = math.ceil(0.95 * count)
        p95 = await session.scalar(
            select(RequestLog.latency_ms)
            .where(*filters)
            .order_by(RequestLog.latency_ms)
            .offset(rank - 1)
            .limit(1)
        )
    return LogSummary(requests=count, errors=int(failed or 0), p95_latency_ms=p95)


async def budgets_near_limit(session: AsyncSession, *, tenant_id: uuid.UUID | None) -> list[BudgetUsage]:
    """Budgets (of ``tenant_id``'s subjects, or all) at least 80 % used, fullest first."""
    found: list[BudgetUsage] = []
    for budget in await list_budgets(session, tenant_id=tenant_id):
        if budget.amount > 0 and budget.used / budget.amount >= NEAR_LIMIT:
            found.append(BudgetUsage(budget, budget.used / budget.amount))
    found.sort(key=lambda usage: usage.ratio, reverse=True)
    await _name_subjects(session, found)
    return found


async def _name_subjects(session: AsyncSession, found: list[BudgetUsage]) -> None:
    ids = {SubjectType(u.budget.subject_type): set[uuid.UUID]() for u in found}
    for usage in found:
        ids[SubjectType(usage.budget.subject_type)].add(usage.budget.subject_id)
    names: dict[uuid.UUID, str] = {}
    if tenants := ids.get(SubjectType.TENANT):
        rows = await session.execute(select(Tenant.id, Tenant.slug).where(Tenant.id.in_(tenants)))
        names.update(rows.tuples().all())
    if users := ids.get(SubjectType.USER):
        rows = await session.execute(select(User.id, User.email).where(User.id.in_(users)))
        names.update(rows.tuples().all())
    if keys := ids.get(SubjectType.KEY):
        found_keys = await session.execute(
            select(ApiKey.id, ApiKey.key_prefix, ApiKey.alias).where(ApiKey.id.in_(keys))
        )
        names.update(
            (key_id, f"{alias} ({prefix})" if alias else prefix)
            for key_id, prefix, alias in found_keys.tuples()
        )
    for usage in found:
        usage.subject = names.get(usage.budget.subject_id, str(usage.budget.subject_id))


def period_start(day: dt.date, granularity: str) -> dt.date:
    """The first day of the day, ISO week (Monday) or month ``day`` falls in."""
    if granularity == "week":
        return day - dt.timedelta(days=day.weekday())
    if granularity == "month":
        return day.replace(day=1)
    return day


def periods(start: dt.date, end: dt.date, granularity: str) -> Sequence[dt.date]:
    """The starts of every period from ``start`` to ``end`` (inclusive), in order."""
    found: list[dt.date] = []
    day = start
    while day <= end:
        first = period_start(day, granularity)
        if not found or found[-1] != first:
            found.append(first)
        day += dt.timedelta(days=1)
    return found
