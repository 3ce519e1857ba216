"""Portal pages of the audit log (issue 7): ``/audit`` (filters by actor, action prefix, target and time;
cursor pagination; htmx filter swap), ``/audit/{event_id}`` (the event with a before/after diff) and
``/audit.jsonl`` (the filtered events as JSON lines, streamed). Readable with ``audit:read`` only.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from litestar import Request, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import Stream, Template
from litestar.types import ControllerRouterHandler
from sqlalchemy.ext.asyncio import AsyncSession

from portal.api.deps import Db
from portal.audit.api import audit_event_out
from portal.audit.queries import list_audit_events
from portal.auth.admin import AdminCaller
from portal.auth.person import page
from portal.auth.roles import Permission
from portal.db.models import AuditEvent
from portal.errors import DomainError
from portal.spend.api import tenant_filter
from portal.spend.log_pages import domain_http, parse_moment
from portal.state import AppResources
from portal.web.pages import page_caller, render

__all__ = ["PAGES", "AuditFilters", "DiffLine", "diff"]

PAGE_SIZE = 50
EXPORT_BATCH = 500


@dataclass(frozen=True, slots=True)
class DiffLine:
    """One field of an event's before/after: ``change`` is added, removed, changed or same."""

    field: str
    change: str
    before: str
    after: str


def _show(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[DiffLine]:
    """The fields of ``before`` and ``after``, changed ones first (each group by name)."""
    old, new = before or {}, after or {}
    lines: list[DiffLine] = []
    for name in sorted(old.keys() | new.keys()):
        if name not in old:
            change = "added"
        elif name not in new:
            change = "removed"
        else:
            change = "same" if old[name] == new[name] else "changed"
        lines.append(
            DiffLine(
                name,
                change,
                _show(old[name]) if name in old else "",
                _show(new[name]) if name in new else "",
            )
        )
    return sorted(lines, key=lambda line: line.change == "same")


@dataclass(slots=True)
class AuditFilters:
    """The audit list's filters as typed (kept as text to refill the form)."""

    actor: str = ""
    action: str = ""
    target_type: str = ""
    target_id: str = ""
    tenant: str = ""
    start: str = ""
    end: str = ""

    def query(self, **extra: str) -> str:
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(extra)
        return urllib.parse.urlencode({k: v for k, v in values.items() if v})

    async def arguments(self, db: AsyncSession, caller: AdminCaller) -> dict[str, Any]:
        """The keyword arguments of :func:`list_audit_events`."""
        return {
            "tenant_id": await tenant_filter(db, caller, self.tenant.strip() or None),
            "actor_id": self.actor.strip() or None,
            "action": self.action.strip() or None,
            "target_type": self.target_type.strip() or None,
            "target_id": self.target_id.strip() or None,
            "start": parse_moment(self.start, "start"),
            "end": parse_moment(self.end, "end"),
        }


def _filters(
    actor: str | None,
    action: str | None,
    target_type: str | None,
    target_id: str | None,
    tenant: str | None,
    start: str | None,
    end: str | None,
) -> AuditFilters:
    return AuditFilters(
        actor=actor or "",
        action=action or "",
        target_type=target_type or "",
        target_id=target_id or "",
        tenant=tenant or "",
        start=start or "",
        end=end or "",
    )


@get("/audit", name="audit:list", opt=page(Permission.AUDIT_READ))
async def list_events(
    request: Request[Any, Any, Any],
    db: Db,
    actor: FromQuery[str | None] = None,
    action: FromQuery[str | None] = None,
    target_type: FromQuery[str | None] = None,
    target_id: FromQuery[str | None] = None,
    tenant: FromQuery[str | None] = None,
    start: FromQuery[str | None] = None,
    end: FromQuery[str | None] = None,
    before: FromQuery[str | None] = None,
) -> Template:
    """The audit log, newest first, filtered; htmx swaps only the table."""
    caller = await page_caller(request)
    filters = _filters(actor, action, target_type, target_id, tenant, start, end)
    context: dict[str, Any] = {
        "filters": filters,
        "rows": [],
        "next_query": None,
        "error": None,
        "fields": {},
        "paged": bool(before),
    }
    status_code = 200
    try:
        arguments = await filters.arguments(db, caller)
        before_id = int(before) if before and before.isdigit() else None
        rows = await list_audit_events(db, **arguments, before_id=before_id, limit=PAGE_SIZE)
    except DomainError as exc:
        context["error"] = exc.message
        context["fields"] = getattr(exc, "fields", {})
        status_code = exc.status_code
    else:
        context["rows"] = rows[:PAGE_SIZE]
        if len(rows) > PAGE_SIZE:
            context["next_query"] = filters.query(before=str(rows[PAGE_SIZE - 1].id))
    return await render(
        request, "audit/list.html", context, fragment="audit/_results.html", status_code=status_code
    )


@get("/audit/{event_id:str}", name="audit:detail", opt=page(Permission.AUDIT_READ))
async def event_detail(request: Request[Any, Any, Any], db: Db, event_id: FromPath[str]) -> Template:
    """One audit event and the diff of its before and after."""
    caller = await page_caller(request)
    event: AuditEvent | None = None
    if event_id.isdigit():
        wanted = int(event_id)
        try:
            tenant_id = caller.scoped_tenant(None)
        except DomainError as exc:
            raise domain_http(exc) from exc
        rows = await list_audit_events(db, tenant_id=tenant_id, before_id=wanted + 1, limit=1)
        event = next((row for row in rows if row.id == wanted), None)
    if event is None:
        raise NotFoundException(f"audit event {event_id} does not exist")
    return await render(
        request, "audit/detail.html", {"event": event, "lines": diff(event.before, event.after)}
    )


async def _export(resources: AppResources, arguments: dict[str, Any]) -> AsyncIterator[bytes]:
    before_id: int | None = None
    while True:
        async with resources.sessions() as session:
            rows = await list_audit_events(session, **arguments, before_id=before_id, limit=EXPORT_BATCH)
        batch = rows[:EXPORT_BATCH]
        if batch:
            yield "".join(_jsonl(row) for row in batch).encode()
        if len(rows) <= EXPORT_BATCH:
            return
        before_id = batch[-1].id


def _jsonl(event: AuditEvent) -> str:
    out = audit_event_out(event)
    values = {name: getattr(out, name) for name in out.__struct_fields__}
    return json.dumps(values, default=_json_default, ensure_ascii=False, sort_keys=True) + "\n"


def _json_default(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


@get("/audit.jsonl", name="audit:export", opt=page(Permission.AUDIT_READ))
async def export_events(
    request: Request[Any, Any, Any],
    db: Db,
    actor: FromQuery[str | None] = None,
    action: FromQuery[str | None] = None,
    target_type: FromQuery[str | None] = None,
    target_id: FromQuery[str | None] = None,
    tenant: FromQuery[str | None] = None,
    start: FromQuery[str | None] = None,
    end: FromQuery[str | None] = None,
) -> Stream:
    """The filtered audit events, newest first, one JSON object per line."""
    caller = await page_caller(request)
    filters = _filters(actor, action, target_type, target_id, tenant, start, end)
    try:
        arguments = await filters.arguments(db, caller)
    except DomainError as exc:
        raise domain_http(exc) from exc
    resources: AppResources = request.app.state.resources
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return Stream(
        _export(resources, arguments),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="audit-{stamp}.jsonl"'},
    )


PAGES: list[ControllerRouterHandler] = [list_events, export_events, event_detail]
