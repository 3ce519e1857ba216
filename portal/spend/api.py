"""``/api/spend`` (the spend report from the daily rollup) and ``/api/logs`` (the request log).

Tenant admins are held to their own tenant: without a ``tenant`` filter they get their tenant's data,
naming another tenant is 403.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.types import ControllerRouterHandler
from sqlalchemy.ext.asyncio import AsyncSession

from portal.api.deps import Caller, Db
from portal.api.pagination import Page, check_limit, cursor_int, page_of
from portal.api.schemas import money
from portal.auth.admin import AdminCaller
from portal.auth.roles import Permission, need
from portal.db.models import RequestLog
from portal.errors import ValidationFailedError
from portal.spend import queries
from portal.spend.queries import SpendRow
from portal.tenants.service import get_tenant
from portal.timeutil import utcnow
from portal.users.service import get_user

__all__ = [
    "ROUTES",
    "LogController",
    "RequestLogOut",
    "SpendController",
    "SpendReport",
    "SpendRowOut",
    "SpendTotals",
    "as_utc",
    "request_log_out",
    "tenant_filter",
]

DEFAULT_DAYS = 30
MAX_DAYS = 366


class SpendRowOut(msgspec.Struct):
    """One group of the report; fields it was not grouped by are ``null``."""

    day: dt.date | None
    tenant_id: uuid.UUID | None
    tenant_slug: str | None
    user_id: uuid.UUID | None
    user_email: str | None
    api_key_id: uuid.UUID | None
    key_prefix: str | None
    key_alias: str | None
    model: str | None
    provider: str | None
    requests: int
    errors: int
    cached_requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: str
    avg_latency_ms: float


class SpendTotals(msgspec.Struct):
    requests: int
    errors: int
    cached_requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: str
    avg_latency_ms: float


class SpendReport(msgspec.Struct):
    group_by: list[str]
    start: dt.date
    end: dt.date
    rows: list[SpendRowOut]
    totals: SpendTotals


class RequestLogOut(msgspec.Struct, omit_defaults=True):
    """One proxied call; ``prompt`` and ``response`` appear only when the tenant stores them."""

    id: int
    request_id: str
    created_at: dt.datetime
    tenant_id: uuid.UUID | None
    user_id: uuid.UUID | None
    api_key_id: uuid.UUID | None
    key_prefix: str | None
    endpoint: str
    model: str | None
    deployment_id: uuid.UUID | None
    provider: str | None
    upstream_model: str | None
    status_code: int
    error_type: str | None
    error_message: str | None
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: str
    latency_ms: float
    ttft_ms: float | None
    stream: bool
    cached: bool
    estimated: bool
    attempts: int
    client_ip: str | None
    prompt: str | None = None
    response: str | None = None


def spend_row_out(row: SpendRow) -> SpendRowOut:
    return SpendRowOut(
        day=row.day,
        tenant_id=row.tenant_id,
        tenant_slug=row.tenant_slug,
        user_id=row.user_id,
        user_email=row.user_email,
        api_key_id=row.api_key_id,
        key_prefix=row.key_prefix,
        key_alias=row.key_alias,
        model=row.model,
        provider=row.provider,
        requests=row.requests,
        errors=row.errors,
        cached_requests=row.cached_requests,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        total_tokens=row.total_tokens,
        cost=money(row.cost),
        avg_latency_ms=row.avg_latency_ms,
    )


def request_log_out(log: RequestLog) -> RequestLogOut:
    return RequestLogOut(
        id=log.id,
        request_id=log.request_id,
        created_at=log.created_at,
        tenant_id=log.tenant_id,
        user_id=log.user_id,
        api_key_id=log.api_key_id,
        key_prefix=log.key_prefix,
        endpoint=log.endpoint,
        model=log.model,
        deployment_id=log.deployment_id,
        provider=log.provider,
        upstream_model=log.upstream_model,
        status_code=log.status_code,
        error_type=log.error_type,
        error_message=log.error_message,
        prompt_tokens=log.prompt_tokens,
        completion_tokens=log.completion_tokens,
        total_tokens=log.total_tokens,
        cost=money(log.cost),
        latency_ms=log.latency_ms,
        ttft_ms=log.ttft_ms,
        stream=log.stream,
        cached=log.cached,
        estimated=log.estimated,
        attempts=log.attempts,
        client_ip=log.client_ip,
        prompt=log.prompt,
        response=log.response,
    )


def _as_uuid(ref: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(ref)
    except ValueError:
        return None


async def tenant_filter(db: AsyncSession, caller: AdminCaller, ref: str | None) -> uuid.UUID | None:
    """The tenant a query is held to: ``ref`` (an id, also of a deleted tenant, or a slug), or a
    tenant admin's own tenant (403 when it names another)."""
    tenant_id: uuid.UUID | None = None
    if ref:
        tenant_id = _as_uuid(ref) or (await get_tenant(db, ref)).id
    return caller.scoped_tenant(tenant_id)


async def _user_filter(db: AsyncSession, ref: str | None) -> uuid.UUID | None:
    if not ref:
        return None
    return _as_uuid(ref) or (await get_user(db, ref)).id


def _key_filter(ref: str | None) -> uuid.UUID | None:
    if not ref:
        return None
    key_id = _as_uuid(ref)
    if key_id is None:
        raise ValidationFailedError("invalid key", {"key": "a key id"})
    return key_id


def as_utc(moment: dt.datetime | None) -> dt.datetime | None:
    """A query's datetime in UTC (one without an offset is taken as UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def _day_range(start: dt.date | None, end: dt.date | None) -> tuple[dt.date, dt.date]:
    if end is None:
        end = utcnow().date() if start is None else max(start, utcnow().date())
    if start is None:
        start = end - dt.timedelta(days=DEFAULT_DAYS - 1)
    if end < start:
        raise ValidationFailedError("end before start", {"end": "must not be before start"})
    if (end - start).days + 1 > MAX_DAYS:
        raise ValidationFailedError("range too long", {"start": f"at most {MAX_DAYS} days from start to end"})
    return start, end


def _group_by(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in queries.GROUPS]
    if unknown:
        raise ValidationFailedError(
            "invalid group_by", {"group_by": f"{', '.join(unknown)}: use {', '.join(queries.GROUPS)}"}
        )
    return list(dict.fromkeys(names))


class SpendController(Controller):
    """Spend (LiteLLM: spend reports; COO-LLM: stats) from the daily rollup, per UTC day."""

    path = "/spend"
    tags = ["spend"]

    @get(
        "/",
        opt=need(Permission.SPEND_READ),
        summary="Spend report",
        description=(
            "Requests, errors, tokens, cost (exact decimal string) and mean latency, grouped by any of "
            "day, tenant, user, key, model and provider, over UTC days start..end (inclusive; by default "
            "the last 30 days, at most 366)."
        ),
    )
    async def spend(
        self,
        db: Db,
        caller: Caller,
        group_by: Annotated[
            str, QueryParameter(description="comma list of day, tenant, user, key, model, provider")
        ] = "tenant",
        tenant: Annotated[str | None, QueryParameter(description="tenant id or slug")] = None,
        user: Annotated[str | None, QueryParameter(description="user id, email or external id")] = None,
        key: Annotated[str | None, QueryParameter(description="key id")] = None,
        model: FromQuery[str | None] = None,
        provider: FromQuery[str | None] = None,
        start: Annotated[dt.date | None, QueryParameter(description="first UTC day (YYYY-MM-DD)")] = None,
        end: Annotated[dt.date | None, QueryParameter(description="last UTC day, inclusive")] = None,
    ) -> SpendReport:
        groups = _group_by(group_by)
        first, last = _day_range(start, end)
        rows = await queries.spend_report(
            db,
            group_by=groups,
            tenant_id=await tenant_filter(db, caller, tenant),
            user_id=await _user_filter(db, user),
            api_key_id=_key_filter(key),
            model=model,
            provider=provider,
            start=first,
            end=last,
        )
        total = queries.spend_totals(rows)
        return SpendReport(
            group_by=groups,
            start=first,
            end=last,
            rows=[spend_row_out(row) for row in rows],
            totals=SpendTotals(
                requests=total.requests,
                errors=total.errors,
                cached_requests=total.cached_requests,
                prompt_tokens=total.prompt_tokens,
                completion_tokens=total.completion_tokens,
                total_tokens=total.total_tokens,
                cost=money(total.cost),
                avg_latency_ms=total.avg_latency_ms,
            ),
        )


class LogController(Controller):
    """The request log: one entry per proxied call, newest first."""

    path = "/logs"
    tags = ["logs"]

    @get(
        "/",
        opt=need(Permission.LOGS_READ),
        summary="List request logs",
        description="Newest first; pass next_cursor as cursor for the next (older) page.",
    )
    async def list_logs(
        self,
        db: Db,
        caller: Caller,
        key: Annotated[str | None, QueryParameter(description="key id")] = None,
        tenant: Annotated[str | None, QueryParameter(description="tenant id or slug")] = None,
        user: Annotated[str | None, QueryParameter(description="user id, email or external id")] = None,
        model: FromQuery[str | None] = None,
        status: Annotated[int | None, QueryParameter(description="HTTP status code")] = None,
        ok: Annotated[bool | None, QueryParameter(description="true: status below 400")] = None,
        cached: FromQuery[bool | None] = None,
        start: Annotated[dt.datetime | None, QueryParameter(description="ISO datetime (UTC)")] = None,
        end: Annotated[dt.datetime | None, QueryParameter(description="ISO datetime, inclusive")] = None,
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int] = 100,
    ) -> Page[RequestLogOut]:
        check_limit(limit)
        rows = await queries.list_request_logs(
            db,
            tenant_id=await tenant_filter(db, caller, tenant),
            api_key_id=_key_filter(key),
            user_id=await _user_filter(db, user),
            model=model,
            status=status,
            ok=ok,
            cached=cached,
            start=as_utc(start),
            end=as_utc(end),
            before_id=cursor_int(cursor),
            limit=limit,
        )
        return page_of(rows, limit, lambda row: row.id, request_log_out)

    @get("/{request_id:str}", opt=need(Permission.LOGS_READ), summary="Read one request log entry")
    async def get_log(self, db: Db, caller: Caller, request_id: FromPath[str]) -> RequestLogOut:
        row = await queries.get_request_log(db, request_id)
        caller.check_visible(row.tenant_id, f"request {request_id}")
        return request_log_out(row)


ROUTES: list[ControllerRouterHandler] = [SpendController, LogController]
