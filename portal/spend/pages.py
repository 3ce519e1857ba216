"""Portal pages of the spend domain (issue 7): ``/dashboard`` (the last 30 days at a glance),
``/spend`` (spend by tenant, key, user, model or provider over a range, by day, week or month) and
``/spend.csv`` (the same report as CSV).

Both pages read :func:`portal.spend.queries.spend_report`; the chart data embedded in the page, the
table under it and the CSV come from the same rows, money as exact decimal strings. Members and tenant
admins see their tenant only (naming another is 403, an unknown tenant 404).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import urllib.parse
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from litestar import Request, get
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import FromQuery
from litestar.response import Response, Template
from litestar.types import ControllerRouterHandler
from sqlalchemy.ext.asyncio import AsyncSession

from portal.api.deps import Db
from portal.api.schemas import money
from portal.auth.admin import AdminCaller
from portal.auth.person import page
from portal.auth.roles import Permission
from portal.errors import NotFoundError, PermissionDeniedError, ValidationFailedError
from portal.spend import queries
from portal.spend.dashboard import GRANULARITIES, budgets_near_limit, log_summary, period_start, periods
from portal.spend.queries import SpendRow
from portal.tenants.service import get_tenant
from portal.timeutil import utcnow
from portal.web.pages import page_caller, render

__all__ = [
    "PAGES",
    "SpendView",
    "build_spend_view",
    "daily_chart",
    "dashboard",
    "spend_csv",
    "spend_page",
]

DIMENSIONS = ("tenant", "key", "user", "model", "provider")
DEFAULT_DAYS = 30
MAX_DAYS = 366
CHART_SERIES = 10
TOP = 10


@dataclass(slots=True)
class GroupTotal:
    label: str
    requests: int = 0
    errors: int = 0
    total_tokens: int = 0
    cost: Decimal = Decimal(0)


@dataclass(slots=True)
class SpendView:
    """A spend report shaped for a page: per group totals (the table), per period totals and the
    chart's series (one per group, the smallest folded into "Other"), all from the same rows."""

    start: dt.date
    end: dt.date
    granularity: str
    group: str
    rows: list[SpendRow]
    groups: list[GroupTotal] = field(default_factory=list)
    by_period: list[tuple[dt.date, GroupTotal]] = field(default_factory=list)
    total: GroupTotal = field(default_factory=lambda: GroupTotal("Total"))
    chart: dict[str, Any] = field(default_factory=dict)


def _label(row: SpendRow, group: str) -> str:
    if group == "tenant":
        return row.tenant_slug or (str(row.tenant_id) if row.tenant_id else "(no tenant)")
    if group == "user":
        return row.user_email or (str(row.user_id) if row.user_id else "(no user)")
    if group == "key":
        if row.key_prefix:
            return f"{row.key_alias} ({row.key_prefix})" if row.key_alias else row.key_prefix
        return str(row.api_key_id) if row.api_key_id else "(no key)"
    value = row.model if group == "model" else row.provider
    return value or f"(no {group})"


def _add(total: GroupTotal, row: SpendRow) -> None:
    total.requests += row.requests
    total.errors += row.errors
    total.total_tokens += row.total_tokens
    total.cost += row.cost


def _epoch(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


def build_spend_view(
    rows: list[SpendRow], *, start: dt.date, end: dt.date, granularity: str, group: str
) -> SpendView:
    """Fold report rows grouped by day and ``group`` into the table and the chart of a page."""
    view = SpendView(start=start, end=end, granularity=granularity, group=group, rows=rows)
    starts = list(periods(start, end, granularity))
    index = {day: i for i, day in enumerate(starts)}
    totals: dict[str, GroupTotal] = {}
    per_group: dict[str, list[Decimal]] = {}
    per_period = [GroupTotal(day.isoformat()) for day in starts]
    for row in rows:
        assert row.day is not None
        label = _label(row, group)
        slot = index[period_start(row.day, granularity)]
        _add(totals.setdefault(label, GroupTotal(label)), row)
        per_group.setdefault(label, [Decimal(0)] * len(starts))[slot] += row.cost
        _add(per_period[slot], row)
        _add(view.total, row)
    view.groups = sorted(totals.values(), key=lambda g: (-g.cost, g.label))
    view.by_period = list(zip(starts, per_period, strict=True))
    series = [(g.label, per_group[g.label]) for g in view.groups[:CHART_SERIES]]
    rest = view.groups[CHART_SERIES:]
    if rest:
        other = [sum((per_group[g.label][i] for g in rest), Decimal(0)) for i in range(len(starts))]
        series.append((f"Other ({len(rest)})", other))
    view.chart = {
        "x": [_epoch(day) for day in starts],
        "labels": [day.isoformat() for day in starts],
        "series": [{"label": label, "cost": [money(value) for value in costs]} for label, costs in series],
        "requests": [p.requests for p in per_period],
        "period": granularity,
    }
    return view


def _chart_json(data: dict[str, Any]) -> str:
    """JSON safe inside ``<script type="application/json">``."""
    return json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


async def _scope(request: Request[Any, Any, Any], db: AsyncSession, ref: str | None) -> AdminCaller:
    """The caller of this page held to tenant ``ref`` (members: one of theirs, default their first)."""
    tenant_id: uuid.UUID | None = None
    try:
        if ref:
            tenant_id = (await get_tenant(db, ref)).id
        caller = await page_caller(request, tenant_id)
        scoped = caller.scoped_tenant(tenant_id)
    except NotFoundError as exc:
        raise NotFoundException(str(exc)) from exc
    except PermissionDeniedError as exc:
        raise PermissionDeniedException(str(exc)) from exc
    return AdminCaller(
        caller.role, caller.key_id, scoped, caller.label, caller.ip, caller.request_id, caller.user_id
    )


def _parse_day(text: str | None, name: str) -> dt.date | None:
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise ValidationFailedError(f"invalid {name}", {name: "a date as YYYY-MM-DD"}) from exc


def _day_range(start: str | None, end: str | None) -> tuple[dt.date, dt.date]:
    first, last = _parse_day(start, "start"), _parse_day(end, "end")
    if last is None:
        last = utcnow().date() if first is None else max(first, utcnow().date())
    if first is None:
        first = last - dt.timedelta(days=DEFAULT_DAYS - 1)
    if last < first:
        raise ValidationFailedError("end before start", {"end": "must not be before start"})
    if (last - first).days + 1 > MAX_DAYS:
        raise ValidationFailedError("range too long", {"start": f"at most {MAX_DAYS} days"})
    return first, last


@dataclass(slots=True)
class _Filters:
    start: dt.date
    end: dt.date
    granularity: str
    group: str
    model: str | None
    provider: str | None


def _filters(
    start: str | None, end: str | None, granularity: str, group: str, model: str | None, provider: str | None
) -> _Filters:
    if granularity not in GRANULARITIES:
        raise ValidationFailedError("invalid granularity", {"granularity": "day, week or month"})
    if group not in DIMENSIONS:
        raise ValidationFailedError("invalid group", {"group": ", ".join(DIMENSIONS)})
    first, last = _day_range(start, end)
    return _Filters(first, last, granularity, group, model or None, provider or None)


async def _report(db: AsyncSession, caller: AdminCaller, f: _Filters) -> SpendView:
    rows = await queries.spend_report(
        db,
        group_by=["day", f.group],
        tenant_id=caller.tenant_id,
        model=f.model,
        provider=f.provider,
        start=f.start,
        end=f.end,
    )
    return build_spend_view(rows, start=f.start, end=f.end, granularity=f.granularity, group=f.group)


def _error_text(exc: ValidationFailedError) -> str:
    if exc.fields:
        return "; ".join(f"{name}: {text}" for name, text in exc.fields.items())
    return exc.message


@get("/spend", opt=page(Permission.SPEND_READ), name="spend_page")
async def spend_page(
    request: Request[Any, Any, Any],
    db: Db,
    start: FromQuery[str | None] = None,
    end: FromQuery[str | None] = None,
    granularity: FromQuery[str] = "day",
    group: FromQuery[str] = "tenant",
    tenant: FromQuery[str | None] = None,
    model: FromQuery[str | None] = None,
    provider: FromQuery[str | None] = None,
) -> Template:
    """Spend by a dimension over a range of days, by day, week or month: a chart and its table."""
    caller = await _scope(request, db, tenant)
    form = {
        "start": start or "",
        "end": end or "",
        "granularity": granularity,
        "group": group,
        "tenant": tenant or "",
        "model": model or "",
        "provider": provider or "",
    }
    context: dict[str, Any] = {
        "form": form,
        "dimensions": DIMENSIONS,
        "granularities": GRANULARITIES,
        "tenant_scoped": caller.tenant_scoped,
        "view": None,
        "error": None,
        "money": money,
    }
    try:
        filters = _filters(start, end, granularity, group, model, provider)
    except ValidationFailedError as exc:
        context["error"] = _error_text(exc)
        return await render(
            request, "spend/spend.html", context, fragment="spend/_results.html", status_code=422
        )
    form["start"], form["end"] = filters.start.isoformat(), filters.end.isoformat()
    view = await _report(db, caller, filters)
    context["view"] = view
    context["chart_json"] = _chart_json(view.chart)
    context["csv_query"] = urllib.parse.urlencode({k: v for k, v in form.items() if v})
    return await render(request, "spend/spend.html", context, fragment="spend/_results.html")


@get("/spend.csv", opt=page(Permission.SPEND_READ), name="spend_csv")
async def spend_csv(
    request: Request[Any, Any, Any],
    db: Db,
    start: FromQuery[str | None] = None,
    end: FromQuery[str | None] = None,
    granularity: FromQuery[str] = "day",
    group: FromQuery[str] = "tenant",
    tenant: FromQuery[str | None] = None,
    model: FromQuery[str | None] = None,
    provider: FromQuery[str | None] = None,
) -> Response[str]:
    """The ``/spend`` report as CSV: one line per period and group, money as exact decimals."""
    caller = await _scope(request, db, tenant)
    try:
        filters = _filters(start, end, granularity, group, model, provider)
    except ValidationFailedError as exc:
        return Response(_error_text(exc) + "\n", status_code=422, media_type="text/plain")
    view = await _report(db, caller, filters)
    merged: dict[tuple[dt.date, str], GroupTotal] = {}
    for row in view.rows:
        assert row.day is not None
        label = _label(row, filters.group)
        first = period_start(row.day, filters.granularity)
        _add(merged.setdefault((first, label), GroupTotal(label)), row)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["period", filters.group, "requests", "errors", "total_tokens", "cost"])
    for (first, label), total in sorted(merged.items(), key=lambda item: (item[0][0], -item[1].cost)):
        writer.writerow(
            [first.isoformat(), label, total.requests, total.errors, total.total_tokens, money(total.cost)]
        )
    name = f"spend-{filters.group}-{filters.granularity}-{filters.start}-{filters.end}.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def daily_chart(
    db: AsyncSession, *, tenant_id: uuid.UUID | None, start: dt.date, end: dt.date
) -> tuple[SpendView, str]:
    """Spend and requests per day from ``start`` to ``end`` (one tenant, or all): the view (totals and
    the chart's table) and the chart's JSON for ``spend/_daily_chart.html``."""
    days = await queries.spend_report(db, group_by=["day"], tenant_id=tenant_id, start=start, end=end)
    view = build_spend_view(
        [_with_group(row) for row in days], start=start, end=end, granularity="day", group="provider"
    )
    chart = {"x": view.chart["x"], "labels": view.chart["labels"], "requests": view.chart["requests"]}
    chart["cost"] = [money(p.cost) for _, p in view.by_period]
    return view, _chart_json(chart)


def _top(rows: Sequence[SpendRow], group: str) -> list[GroupTotal]:
    found: list[GroupTotal] = []
    for row in rows[:TOP]:
        total = GroupTotal(_label(row, group))
        _add(total, row)
        found.append(total)
    return found


@get("/dashboard", opt=page(Permission.SPEND_READ), name="dashboard")
async def dashboard(
    request: Request[Any, Any, Any], db: Db, tenant: FromQuery[str | None] = None
) -> Template:
    """The last 30 days: spend and requests by day, top tenants, keys and models, error rate,
    p95 latency and budgets close to their limit."""
    caller = await _scope(request, db, tenant)
    now = utcnow()
    end = now.date()
    start = end - dt.timedelta(days=DEFAULT_DAYS - 1)
    scope = caller.tenant_id
    view, chart_json = await daily_chart(db, tenant_id=scope, start=start, end=end)
    top: dict[str, list[GroupTotal]] = {}
    for group in ("tenant", "key", "model"):
        if group == "tenant" and caller.tenant_scoped:
            continue
        rows = await queries.spend_report(db, group_by=[group], tenant_id=scope, start=start, end=end)
        top[group] = _top(rows, group)
    first = dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC)
    context = {
        "start": start,
        "end": end,
        "total": view.total,
        "by_period": view.by_period,
        "chart_json": chart_json,
        "top": top,
        "logs": await log_summary(db, tenant_id=scope, start=first, end=now),
        "budgets": await budgets_near_limit(db, tenant_id=scope),
        "tenant_scoped": caller.tenant_scoped,
        "money": money,
    }
    return await render(request, "spend/dashboard.html", context)


def _with_group(row: SpendRow) -> SpendRow:
    row.provider = "all"
    return row


PAGES: list[ControllerRouterHandler] = [dashboard, spend_page, spend_csv]
