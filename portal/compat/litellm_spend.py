"""LiteLLM's spend routes: ``/spend/logs`` (request logs as ``SpendLogs`` rows, or a per-day summary) and
``/global/spend*`` (totals and top spenders over the last 30 days)."""

from __future__ import annotations

import datetime as dt
import uuid

from litestar import get
from litestar.params import FromQuery
from litestar.types import ControllerRouterHandler
from sqlalchemy.ext.asyncio import AsyncSession

from portal.api.deps import Caller, Db
from portal.auth.roles import Permission, need
from portal.compat.litellm_common import BATCH, Body, key_named, user_named
from portal.compat.litellm_views import Views
from portal.db.models import ApiKey, SubjectType, User
from portal.errors import NotFoundError, ValidationFailedError
from portal.spend.queries import get_request_log, list_request_logs, spend_report, spend_totals
from portal.timeutil import utcnow

__all__ = ["SPEND_ROUTES"]


def _day(value: str | None, field: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        raise ValidationFailedError(f"invalid {field}", {field: "a date, YYYY-MM-DD"}) from None


async def _daily_summary(
    db: AsyncSession,
    views: Views,
    *,
    tenant_id: uuid.UUID | None,
    key: ApiKey | None,
    user: User | None,
    start: dt.date,
    end: dt.date,
) -> list[Body]:
    """LiteLLM's per-day spend summary: total, by model, by user and by key."""
    rows = await spend_report(
        db,
        group_by=["day", "key", "user", "model"],
        tenant_id=tenant_id,
        api_key_id=key.id if key else None,
        user_id=user.id if user else None,
        start=start,
        end=end,
    )
    days: dict[dt.date, Body] = {}
    for row in rows:
        assert row.day is not None
        day = days.setdefault(
            row.day, {"startTime": row.day.isoformat(), "spend": 0.0, "models": {}, "users": {}}
        )
        cost = float(row.cost)
        day["spend"] += cost
        model = row.model or ""
        day["models"][model] = day["models"].get(model, 0.0) + cost
        user_ref = await views.user_ref(row.user_id) or ""
        day["users"][user_ref] = day["users"].get(user_ref, 0.0) + cost
        api_key = str(row.api_key_id) if row.api_key_id else ""
        day[api_key] = day.get(api_key, 0.0) + cost
    return [days[d] for d in sorted(days)]


@get("/spend/logs", opt=need(Permission.LOGS_READ), summary="Spend logs (LiteLLM)")
async def spend_logs(
    db: Db,
    caller: Caller,
    api_key: FromQuery[str | None] = None,
    user_id: FromQuery[str | None] = None,
    request_id: FromQuery[str | None] = None,
    start_date: FromQuery[str | None] = None,
    end_date: FromQuery[str | None] = None,
    summarize: FromQuery[bool] = True,
) -> list[Body]:
    """The request log as LiteLLM ``SpendLogs`` rows (newest first, at most 1000), or a per-day summary
    when both dates are given."""
    views = Views(db, caller.sees)
    if request_id:
        row = await get_request_log(db, request_id)
        caller.check_visible(row.tenant_id, f"request {request_id}")
        return [await views.spend_log(row)]
    tenant_id = caller.scoped_tenant(None)
    start, end = _day(start_date, "start_date"), _day(end_date, "end_date")
    try:
        key = await key_named(db, caller, api_key, write=False) if api_key else None
        user = await user_named(db, caller, user_id) if user_id else None
    except NotFoundError:
        return []
    if start is not None and end is not None and summarize:
        return await _daily_summary(db, views, tenant_id=tenant_id, key=key, user=user, start=start, end=end)
    rows = await list_request_logs(
        db,
        tenant_id=tenant_id,
        api_key_id=key.id if key else None,
        user_id=user.id if user else None,
        start=dt.datetime.combine(start, dt.time(), dt.UTC) if start else None,
        end=dt.datetime.combine(end, dt.time.max, dt.UTC) if end else None,
        limit=BATCH,
    )
    return [await views.spend_log(r) for r in rows[:BATCH]]


def _last_30_days() -> dt.date:
    return utcnow().date() - dt.timedelta(days=30)


@get("/global/spend", opt=need(Permission.SPEND_READ), summary="Total spend, last 30 days (LiteLLM)")
async def global_spend(db: Db, caller: Caller) -> Body:
    tenant_id = caller.scoped_tenant(None)
    total = spend_totals(await spend_report(db, group_by=[], tenant_id=tenant_id, start=_last_30_days()))
    budget = await Views(db, caller.sees).budget(SubjectType.TENANT, tenant_id) if tenant_id else None
    return {"spend": float(total.cost), "max_budget": float(budget.amount) if budget else 0.0}


@get(
    "/global/spend/keys", opt=need(Permission.SPEND_READ), summary="Top keys by spend, last 30 days (LiteLLM)"
)
async def global_spend_keys(db: Db, caller: Caller, limit: FromQuery[int] = 5) -> list[Body]:
    rows = await spend_report(
        db, group_by=["key"], tenant_id=caller.scoped_tenant(None), start=_last_30_days()
    )
    return [
        {
            "api_key": str(r.api_key_id) if r.api_key_id else "",
            "total_spend": float(r.cost),
            "key_alias": r.key_alias,
            "key_name": r.key_prefix,
        }
        for r in rows[: max(limit, 0)]
    ]


@get(
    "/global/spend/models",
    opt=need(Permission.SPEND_READ),
    summary="Top models by spend, last 30 days (LiteLLM)",
)
async def global_spend_models(db: Db, caller: Caller, limit: FromQuery[int] = 5) -> list[Body]:
    rows = await spend_report(
        db, group_by=["model"], tenant_id=caller.scoped_tenant(None), start=_last_30_days()
    )
    return [{"model": r.model or "", "total_spend": float(r.cost)} for r in rows[: max(limit, 0)]]


SPEND_ROUTES: list[ControllerRouterHandler] = [
    spend_logs,
    global_spend,
    global_spend_keys,
    global_spend_models,
]
