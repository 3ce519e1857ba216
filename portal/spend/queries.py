"""Read side of spend: the spend report (from the ``spend_daily`` rollup), per-key call statistics
and the request-log listing (from ``request_logs``).

Every surface (native ``/api``, the COO-LLM and LiteLLM adapters, the pages) reads spend through these
functions. Money stays an exact :class:`~decimal.Decimal`; time ranges are inclusive at both ends.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from portal.db.models import ApiKey, RequestLog, SpendDaily, Tenant, User
from portal.db.types import Money
from portal.errors import NotFoundError, ValidationFailedError

__all__ = [
    "GROUPS",
    "CallStats",
    "SpendRow",
    "call_stats",
    "get_request_log",
    "list_request_logs",
    "spend_report",
    "spend_totals",
]

GROUPS: dict[str, Any] = {
    "day": SpendDaily.day,
    "tenant": SpendDaily.tenant_id,
    "user": SpendDaily.user_id,
    "key": SpendDaily.api_key_id,
    "model": SpendDaily.model,
    "provider": SpendDaily.provider,
}
"""The dimensions a spend report can be grouped by, and the rollup column of each."""

_GROUP_FIELD = {
    "day": "day",
    "tenant": "tenant_id",
    "user": "user_id",
    "key": "api_key_id",
    "model": "model",
    "provider": "provider",
}


@dataclass(slots=True)
class SpendRow:
    """One group of a spend report: the group fields it was grouped by (the others ``None``), the sums,
    and display labels of the grouped tenant (slug), user (email) and key (prefix and alias)."""

    day: dt.date | None = None
    tenant_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    model: str | None = None
    provider: str | None = None
    requests: int = 0
    errors: int = 0
    cached_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: Decimal = Decimal(0)
    avg_latency_ms: float = 0.0
    latency_ms_sum: float = 0.0
    tenant_slug: str | None = None
    user_email: str | None = None
    key_prefix: str | None = None
    key_alias: str | None = None


@dataclass(slots=True)
class CallStats:
    """Call statistics over ``request_logs`` (the COO-LLM client metrics)."""

    total_requests: int
    total_tokens: int
    total_cost: Decimal
    success_rate: float
    avg_latency_ms: float
    last_request_at: dt.datetime | None


def _check_groups(group_by: Sequence[str]) -> list[str]:
    groups: list[str] = []
    for name in group_by:
        if name not in GROUPS:
            raise ValidationFailedError(
                "invalid group_by", {"group_by": f"{name!r} is not one of {', '.join(GROUPS)}"}
            )
        if name not in groups:
            groups.append(name)
    return groups


def _money_sum(column: Any) -> ColumnElement[Decimal]:
    return type_coerce(func.sum(column), Money)


async def spend_report(
    session: AsyncSession,
    *,
    group_by: Sequence[str],
    tenant_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    api_key_id: uuid.UUID | None = None,
    model: str | None = None,
    provider: str | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> list[SpendRow]:
    """Spend from the daily rollup, grouped by any of :data:`GROUPS` (none: one row for everything),
    filtered by subject, model, provider and UTC days ``start``..``end`` (inclusive). Rows come by day,
    then by cost (highest first)."""
    groups = _check_groups(group_by)
    columns = [GROUPS[g].label(g) for g in groups]
    requests = func.sum(SpendDaily.requests).label("requests")
    cost = _money_sum(SpendDaily.cost).label("cost")
    query: Select[Any] = select(
        *columns,
        requests,
        func.sum(SpendDaily.errors).label("errors"),
        func.sum(SpendDaily.cached_requests).label("cached_requests"),
        func.sum(SpendDaily.prompt_tokens).label("prompt_tokens"),
        func.sum(SpendDaily.completion_tokens).label("completion_tokens"),
        cost,
        func.sum(SpendDaily.latency_ms_sum).label("latency_ms_sum"),
    )
    filters: list[ColumnElement[bool]] = []
    if tenant_id is not None:
        filters.append(SpendDaily.tenant_id == tenant_id)
    if user_id is not None:
        filters.append(SpendDaily.user_id == user_id)
    if api_key_id is not None:
        filters.append(SpendDaily.api_key_id == api_key_id)
    if model is not None:
        filters.append(SpendDaily.model == model)
    if provider is not None:
        filters.append(SpendDaily.provider == provider)
    if start is not None:
        filters.append(SpendDaily.day >= start)
    if end is not None:
        filters.append(SpendDaily.day <= end)
    if filters:
        query = query.where(*filters)
    if groups:
        query = query.group_by(*(GROUPS[g] for g in groups))
        order: list[Any] = [GROUPS["day"]] if "day" in groups else []
        order.append(cost.desc())
        order.extend(GROUPS[g] for g in groups if g != "day")
        query = query.order_by(*order)
    result = await session.execute(query)
    rows: list[SpendRow] = []
    for record in result.mappings():
        if not groups and not record["requests"]:
            continue
        row = SpendRow(
            requests=int(record["requests"] or 0),
            errors=int(record["errors"] or 0),
            cached_requests=int(record["cached_requests"] or 0),
            prompt_tokens=int(record["prompt_tokens"] or 0),
            completion_tokens=int(record["completion_tokens"] or 0),
            cost=record["cost"] if record["cost"] is not None else Decimal(0),
            latency_ms_sum=float(record["latency_ms_sum"] or 0.0),
        )
        for g in groups:
            setattr(row, _GROUP_FIELD[g], record[g])
        _finish(row)
        rows.append(row)
    await _label(session, rows, groups)
    return rows


def _finish(row: SpendRow) -> None:
    row.total_tokens = row.prompt_tokens + row.completion_tokens
    row.avg_latency_ms = row.latency_ms_sum / row.requests if row.requests else 0.0


def spend_totals(rows: Sequence[SpendRow]) -> SpendRow:
    """The sums of a report's rows (no group fields)."""
    total = SpendRow()
    for row in rows:
        for name in ("requests", "errors", "cached_requests", "prompt_tokens", "completion_tokens"):
            setattr(total, name, getattr(total, name) + getattr(row, name))
        total.cost += row.cost
        total.latency_ms_sum += row.latency_ms_sum
    _finish(total)
    return total


async def _label(session: AsyncSession, rows: list[SpendRow], groups: list[str]) -> None:
    if "tenant" in groups:
        ids = {r.tenant_id for r in rows if r.tenant_id is not None}
        slugs = (
            dict(
                (await session.execute(select(Tenant.id, Tenant.slug).where(Tenant.id.in_(ids))))
                .tuples()
                .all()
            )
            if ids
            else {}
        )
        for r in rows:
            r.tenant_slug = slugs.get(r.tenant_id) if r.tenant_id else None
    if "user" in groups:
        ids = {r.user_id for r in rows if r.user_id is not None}
        emails = (
            dict((await session.execute(select(User.id, User.email).where(User.id.in_(ids)))).tuples().all())
            if ids
            else {}
        )
        for r in rows:
            r.user_email = emails.get(r.user_id) if r.user_id else None
    if "key" in groups:
        ids = {r.api_key_id for r in rows if r.api_key_id is not None}
        keys: dict[uuid.UUID, tuple[str, str | None]] = {}
        if ids:
            found = await session.execute(
                select(ApiKey.id, ApiKey.key_prefix, ApiKey.alias).where(ApiKey.id.in_(ids))
            )
            keys = {key_id: (prefix, alias) for key_id, prefix, alias in found.tuples()}
        for r in rows:
            if r.api_key_id in keys:
                r.key_prefix, r.key_alias = keys[r.api_key_id]


def _log_filters(
    *,
    tenant_id: uuid.UUID | None = None,
    api_key_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    model: str | None = None,
    status: int | None = None,
    ok: bool | None = None,
    cached: bool | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> list[ColumnElement[bool]]:
    filters: list[ColumnElement[bool]] = []
    if tenant_id is not None:
        filters.append(RequestLog.tenant_id == tenant_id)
    if api_key_id is not None:
        filters.append(RequestLog.api_key_id == api_key_id)
    if user_id is not None:
        filters.append(RequestLog.user_id == user_id)
    if model is not None:
        filters.append(RequestLog.model == model)
    if status is not None:
        filters.append(RequestLog.status_code == status)
    if ok is not None:
        filters.append(RequestLog.status_code < 400 if ok else RequestLog.status_code >= 400)
    if cached is not None:
        filters.append(RequestLog.cached.is_(cached))
    if start is not None:
        filters.append(RequestLog.created_at >= start)
    if end is not None:
        filters.append(RequestLog.created_at <= end)
    return filters


async def call_stats(
    session: AsyncSession,
    *,
    api_key_id: uuid.UUID | None = None,
    tenant_id: uuid.UUID | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> CallStats:
    """Requests, tokens, cost, success rate (status below 400), mean latency and the last call's time
    of the request logs of a key and/or tenant between ``start`` and ``end`` (inclusive)."""
    filters = _log_filters(tenant_id=tenant_id, api_key_id=api_key_id, start=start, end=end)
    query = select(
        func.count(RequestLog.id),
        func.sum(RequestLog.total_tokens),
        _money_sum(RequestLog.cost),
        func.sum(case((RequestLog.status_code < 400, 1), else_=0)),
        func.avg(RequestLog.latency_ms),
        func.max(RequestLog.created_at),
    )
    if filters:
        query = query.where(*filters)
    count, tokens, cost, succeeded, latency, last = (await session.execute(query)).one()
    count = int(count or 0)
    return CallStats(
        total_requests=count,
        total_tokens=int(tokens or 0),
        total_cost=cost if cost is not None else Decimal(0),
        success_rate=int(succeeded or 0) / count if count else 0.0,
        avg_latency_ms=float(latency or 0.0),
        last_request_at=last,
    )


async def list_request_logs(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID | None = None,
    api_key_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    model: str | None = None,
    status: int | None = None,
    ok: bool | None = None,
    cached: bool | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> Sequence[RequestLog]:
    """Request logs, newest first (by id), up to ``limit + 1`` rows older than the cursor ``before_id``;
    ``ok`` selects successes (status below 400) or failures."""
    filters = _log_filters(
        tenant_id=tenant_id,
        api_key_id=api_key_id,
        user_id=user_id,
        model=model,
        status=status,
        ok=ok,
        cached=cached,
        start=start,
        end=end,
    )
    if before_id is not None:
        filters.append(RequestLog.id < before_id)
    query = select(RequestLog).order_by(RequestLog.id.desc()).limit(limit + 1)
    if filters:
        query = query.where(*filters)
    return (await session.scalars(query)).all()


async def get_request_log(session: AsyncSession, request_id: str) -> RequestLog:
    """The request log with ``request_id`` (or its numeric row id), or :class:`NotFoundError`."""
    row = await session.scalar(select(RequestLog).where(RequestLog.request_id == request_id))
    if row is None and request_id.isdigit():
        row = await session.get(RequestLog, int(request_id))
    if row is None:
        raise NotFoundError(f"request {request_id} does not exist")
    return row
