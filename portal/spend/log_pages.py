"""Portal pages of the request log (issue 7): ``/logs`` (filters, cursor pagination, htmx filter swap),
``/logs/{request_id}`` (one call, prompt and response only when stored) and ``/logs/stream`` (a live
tail of new calls as server-sent events, one HTML ``<tr>`` per event).

Members and tenant admins see only their tenant's calls; another tenant's call is a 404. Reads go
through :mod:`portal.spend.queries`, the same functions the admin API uses.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from litestar import Request, get
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import ServerSentEvent, Template
from litestar.response.sse import ServerSentEventMessage
from litestar.types import ControllerRouterHandler
from sqlalchemy.ext.asyncio import AsyncSession

from portal.api.deps import Db
from portal.api.schemas import money
from portal.auth.admin import AdminCaller
from portal.auth.person import page
from portal.auth.roles import Permission
from portal.db.models import RequestLog
from portal.errors import DomainError, NotFoundError, ValidationFailedError
from portal.spend import queries
from portal.spend.api import as_utc, tenant_filter
from portal.state import AppResources
from portal.web.pages import page_caller, render

__all__ = ["PAGES", "LogFilters", "domain_http", "parse_moment"]

PAGE_SIZE = 50
POLL_S = 1.0
PING_S = 15.0
STREAM_MAX_S = 300.0
"""A tail connection ends after this long; the browser's EventSource reconnects with Last-Event-ID."""
TAIL_BATCH = 100


def domain_http(exc: DomainError) -> HTTPException:
    """A domain error as the HTTP error the page router renders as an error page."""
    if isinstance(exc, NotFoundError):
        return NotFoundException(exc.message)
    return HTTPException(status_code=exc.status_code, detail=exc.message)


def parse_moment(text: str | None, field: str) -> dt.datetime | None:
    """A form's date or datetime (``datetime-local``) as UTC; empty is ``None``."""
    if not text or not text.strip():
        return None
    try:
        return as_utc(dt.datetime.fromisoformat(text.strip()))
    except ValueError as exc:
        raise ValidationFailedError("invalid time", {field: "use YYYY-MM-DD or YYYY-MM-DDTHH:MM"}) from exc


@dataclass(slots=True)
class LogFilters:
    """The filters of the log list as typed by the person (kept as text to refill the form)."""

    key: str = ""
    tenant: str = ""
    model: str = ""
    status: str = ""
    cached: str = ""
    start: str = ""
    end: str = ""

    def query(self, **extra: str) -> str:
        """This filter set (and ``extra``) as a query string, empty values left out."""
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(extra)
        return urllib.parse.urlencode({k: v for k, v in values.items() if v})

    async def arguments(self, db: AsyncSession, caller: AdminCaller) -> dict[str, Any]:
        """The keyword arguments of :func:`queries.list_request_logs` (tenant-scoped for members)."""
        key_id: uuid.UUID | None = None
        if self.key.strip():
            try:
                key_id = uuid.UUID(self.key.strip())
            except ValueError as exc:
                raise ValidationFailedError("invalid key", {"key": "a key id"}) from exc
        status: int | None = None
        if self.status.strip():
            if not self.status.strip().isdigit():
                raise ValidationFailedError("invalid status", {"status": "an HTTP status code"})
            status = int(self.status.strip())
        cached = {"yes": True, "no": False}.get(self.cached)
        start = parse_moment(self.start, "start")
        end = parse_moment(self.end, "end")
        return {
            "tenant_id": await tenant_filter(db, caller, self.tenant.strip() or None),
            "api_key_id": key_id,
            "model": self.model.strip() or None,
            "status": status,
            "cached": cached,
            "start": start,
            "end": end,
        }


def _filters(
    key: str | None,
    tenant: str | None,
    model: str | None,
    status: str | None,
    cached: str | None,
    start: str | None,
    end: str | None,
) -> LogFilters:
    return LogFilters(
        key=key or "",
        tenant=tenant or "",
        model=model or "",
        status=status or "",
        cached=cached if cached in {"yes", "no"} else "",
        start=start or "",
        end=end or "",
    )


@get("/logs", name="logs:list", opt=page(Permission.LOGS_READ))
async def list_logs(
    request: Request[Any, Any, Any],
    db: Db,
    key: FromQuery[str | None] = None,
    tenant: FromQuery[str | None] = None,
    model: FromQuery[str | None] = None,
    status: FromQuery[str | None] = None,
    cached: FromQuery[str | None] = None,
    start: FromQuery[str | None] = None,
    end: FromQuery[str | None] = None,
    before: FromQuery[str | None] = None,
) -> Template:
    """The request log, newest first, filtered; htmx swaps only the table."""
    caller = await page_caller(request)
    filters = _filters(key, tenant, model, status, cached, start, end)
    context: dict[str, Any] = {
        "filters": filters,
        "rows": [],
        "next_query": None,
        "newest_id": 0,
        "error": None,
        "fields": {},
        "staff": not caller.tenant_scoped,
        "paged": bool(before),
        "money": money,
    }
    status_code = 200
    try:
        arguments = await filters.arguments(db, caller)
        before_id = int(before) if before and before.isdigit() else None
        rows = await queries.list_request_logs(db, **arguments, before_id=before_id, limit=PAGE_SIZE)
    except DomainError as exc:
        context["error"] = exc.message
        context["fields"] = getattr(exc, "fields", {})
        status_code = exc.status_code
    else:
        context["rows"] = rows[:PAGE_SIZE]
        if len(rows) > PAGE_SIZE:
            context["next_query"] = filters.query(before=str(rows[PAGE_SIZE - 1].id))
        context["newest_id"] = rows[0].id if rows and before_id is None else 0
    context["stream_query"] = filters.query(after=str(context["newest_id"]))
    return await render(
        request, "logs/list.html", context, fragment="logs/_results.html", status_code=status_code
    )


@get("/logs/{request_id:str}", name="logs:detail", opt=page(Permission.LOGS_READ))
async def log_detail(request: Request[Any, Any, Any], db: Db, request_id: FromPath[str]) -> Template:
    """One proxied call with every column; another tenant's call is a 404."""
    caller = await page_caller(request)
    try:
        row = await queries.get_request_log(db, request_id)
        caller.check_visible(row.tenant_id, f"request {request_id}")
    except DomainError as exc:
        raise domain_http(exc) from exc
    return await render(request, "logs/detail.html", {"row": row, "money": money})


def _render_row(request: Request[Any, Any, Any], row: RequestLog, staff: bool) -> str:
    engine = request.app.template_engine
    assert engine is not None
    template = engine.get_template("logs/_row.html")
    html: str = template.render(row=row, staff=staff, money=money, fresh=True)
    return html.strip()


async def _tail(
    request: Request[Any, Any, Any], arguments: dict[str, Any], last_id: int, staff: bool
) -> AsyncIterator[ServerSentEventMessage]:
    resources: AppResources = request.app.state.resources
    loop = asyncio.get_running_loop()
    started = last_ping = loop.time()
    yield ServerSentEventMessage(comment="tail started", retry=3000)
    while loop.time() - started < STREAM_MAX_S:
        async with resources.sessions() as session:
            rows = await queries.list_request_logs(session, **arguments, limit=TAIL_BATCH)
        fresh = sorted((row for row in rows if row.id > last_id), key=lambda row: row.id)
        for row in fresh:
            last_id = row.id
            yield ServerSentEventMessage(data=_render_row(request, row, staff), event="log", id=str(row.id))
        if loop.time() - last_ping > PING_S:
            last_ping = loop.time()
            yield ServerSentEventMessage(comment="ping")
        await asyncio.sleep(POLL_S)


@get("/logs/stream", name="logs:stream", opt=page(Permission.LOGS_READ))
async def log_stream(
    request: Request[Any, Any, Any],
    db: Db,
    key: FromQuery[str | None] = None,
    tenant: FromQuery[str | None] = None,
    model: FromQuery[str | None] = None,
    status: FromQuery[str | None] = None,
    cached: FromQuery[str | None] = None,
    after: FromQuery[str | None] = None,
) -> ServerSentEvent:
    """New calls (id above ``after`` or Last-Event-ID) as ``log`` events, each a ``<tr>``; an
    ``EventSource`` only (``Accept: text/event-stream``), anything else is a 406."""
    if "text/event-stream" not in request.headers.get("accept", ""):
        raise HTTPException(status_code=406, detail="this is an event stream: open it with EventSource")
    caller = await page_caller(request)
    filters = _filters(key, tenant, model, status, cached, None, None)
    try:
        arguments = await filters.arguments(db, caller)
    except DomainError as exc:
        raise domain_http(exc) from exc
    last = request.headers.get("last-event-id") or after or ""
    if last.isdigit():
        last_id = int(last)
    else:
        newest = await queries.list_request_logs(db, **arguments, limit=1)
        last_id = newest[0].id if newest else 0
    return ServerSentEvent(
        _tail(request, arguments, last_id, not caller.tenant_scoped),
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


PAGES: list[ControllerRouterHandler] = [list_logs, log_stream, log_detail]
