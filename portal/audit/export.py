"""Audit events as JSON lines, oldest first in chain order (``seq``): ``portal audit export`` and the
retention archive write this format, which carries ``seq``, ``prev_hash`` and ``hash`` so an exported
stretch of the chain can be checked on its own."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from portal.audit.api import audit_event_out
from portal.db.models import AuditEvent

__all__ = ["event_line", "events_in_chain_order"]

BATCH = 1000


def _default(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def event_line(event: AuditEvent) -> str:
    """One event as a JSON line (the fields of ``GET /api/audit``, keys sorted), newline included."""
    out = audit_event_out(event)
    values: dict[str, Any] = {name: getattr(out, name) for name in out.__struct_fields__}
    return json.dumps(values, default=_default, ensure_ascii=False, sort_keys=True) + "\n"


async def events_in_chain_order(
    session: AsyncSession, *, since: dt.datetime | None = None, until: dt.datetime | None = None
) -> AsyncIterator[Sequence[AuditEvent]]:
    """Batches of the chained events created in ``since``..``until`` (inclusive), by ``seq``."""
    filters: list[ColumnElement[bool]] = [AuditEvent.seq.is_not(None)]
    if since is not None:
        filters.append(AuditEvent.created_at >= since)
    if until is not None:
        filters.append(AuditEvent.created_at <= until)
    after = 0
    while True:
        batch = (
            await session.scalars(
                select(AuditEvent)
                .where(*filters, AuditEvent.seq > after)
                .order_by(AuditEvent.seq)
                .limit(BATCH)
            )
        ).all()
        if not batch:
            return
        yield batch
        after = batch[-1].seq or after
        session.expunge_all()
