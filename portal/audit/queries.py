"""Read side of the audit log: listing events with filters, newest first, for every surface."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from portal.db.models import AuditEvent

__all__ = ["list_audit_events"]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_audit_events(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID | None = None,
    actor_id: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> Sequence[AuditEvent]:
    """Audit events, newest first (by id), up to ``limit + 1`` rows older than the cursor ``before_id``;
    ``action`` matches a prefix (``"key."``), ``start``..``end`` is inclusive."""
    filters: list[ColumnElement[bool]] = []
    if tenant_id is not None:
        filters.append(AuditEvent.tenant_id == tenant_id)
    if actor_id is not None:
        filters.append(AuditEvent.actor_id == actor_id)
    if action:
        filters.append(AuditEvent.action.like(f"{_escape_like(action)}%", escape="\\"))
    if target_type is not None:
        filters.append(AuditEvent.target_type == target_type)
    if target_id is not None:
        filters.append(AuditEvent.target_id == target_id)
    if start is not None:
        filters.append(AuditEvent.created_at >= start)
    if end is not None:
        filters.append(AuditEvent.created_at <= end)
    if before_id is not None:
        filters.append(AuditEvent.id < before_id)
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
    if filters:
        query = query.where(*filters)
    return (await session.scalars(query)).all()
