"""``/api/audit``: the audit log, newest first, with filters, and ``/api/audit/verify`` (the hash chain
checked); readable by admins and auditors only."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get
from litestar.params import FromQuery, QueryParameter
from litestar.types import ControllerRouterHandler

from portal.api.deps import Caller, Db
from portal.api.pagination import Page, check_limit, cursor_int, page_of
from portal.audit.queries import list_audit_events
from portal.audit.verify import verify_chain
from portal.auth.roles import Permission, need
from portal.db.models import AuditEvent
from portal.spend.api import as_utc, tenant_filter
from portal.state import AppResources

__all__ = ["ROUTES", "AuditController", "AuditEventOut", "ChainReportOut", "audit_event_out"]


class AuditEventOut(msgspec.Struct):
    """One audited change: who, what, on which object, and its values before and after."""

    id: int
    created_at: dt.datetime
    actor_type: str
    actor_id: str | None
    actor_label: str
    action: str
    target_type: str
    target_id: str | None
    tenant_id: uuid.UUID | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    ip: str | None
    request_id: str | None
    seq: int | None
    prev_hash: str | None
    hash: str | None


class ChainBreakOut(msgspec.Struct):
    """Where the chain breaks: the event (when there is one), its seq, and what does not match."""

    event_id: int | None
    seq: int | None
    problem: str


class ChainReportOut(msgspec.Struct):
    """The audit hash chain checked: ``ok``, how many events, their seq range, anchor and head."""

    ok: bool
    events: int
    first_seq: int | None
    last_seq: int | None
    anchor: str | None
    head_seq: int
    head_hash: str
    broken: ChainBreakOut | None


def audit_event_out(event: AuditEvent) -> AuditEventOut:
    return AuditEventOut(
        id=event.id,
        created_at=event.created_at,
        actor_type=event.actor_type,
        actor_id=event.actor_id,
        actor_label=event.actor_label,
        action=event.action,
        target_type=event.target_type,
        target_id=event.target_id,
        tenant_id=event.tenant_id,
        before=event.before,
        after=event.after,
        ip=event.ip,
        request_id=event.request_id,
        seq=event.seq,
        prev_hash=event.prev_hash,
        hash=event.hash,
    )


class AuditController(Controller):
    """The audit log (every change through every surface)."""

    path = "/audit"
    tags = ["audit"]

    @get(
        "/",
        opt=need(Permission.AUDIT_READ),
        summary="List audit events",
        description="Newest first; pass next_cursor as cursor for the next (older) page.",
    )
    async def list_events(
        self,
        db: Db,
        caller: Caller,
        tenant: Annotated[str | None, QueryParameter(description="tenant id or slug")] = None,
        actor: Annotated[str | None, QueryParameter(description="actor id (an admin key or user id)")] = None,
        action: Annotated[str | None, QueryParameter(description="action prefix, e.g. key.")] = None,
        target_type: FromQuery[str | None] = None,
        target_id: FromQuery[str | None] = None,
        start: Annotated[dt.datetime | None, QueryParameter(description="ISO datetime (UTC)")] = None,
        end: Annotated[dt.datetime | None, QueryParameter(description="ISO datetime, inclusive")] = None,
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int] = 100,
    ) -> Page[AuditEventOut]:
        check_limit(limit)
        rows = await list_audit_events(
            db,
            tenant_id=await tenant_filter(db, caller, tenant),
            actor_id=actor,
            action=action,
            target_type=target_type,
            target_id=target_id,
            start=as_utc(start),
            end=as_utc(end),
            before_id=cursor_int(cursor),
            limit=limit,
        )
        return page_of(rows, limit, lambda event: event.id, audit_event_out)

    @get(
        "/verify",
        opt=need(Permission.AUDIT_READ),
        summary="Verify the audit hash chain",
        description="Walks every event in seq order; ok is false and broken names the first broken link "
        "(an edited, removed or unchained event).",
    )
    async def verify(self, request: Request[Any, Any, Any]) -> ChainReportOut:
        resources: AppResources = request.app.state.resources
        report = await verify_chain(resources.sessions)
        return msgspec.convert(report.as_dict(), ChainReportOut)


ROUTES: list[ControllerRouterHandler] = [AuditController]
