"""The audit writer. One function, :func:`record`, adds an event to the caller's session.

The event is flushed with the caller's change and committed or rolled back with it: there is no
separate transaction, so a rolled-back change never leaves an event and a committed one always has one.
When the transaction commits, the event is sealed into the hash chain (:mod:`portal.audit.chain`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from portal.audit.chain import track
from portal.db.models import AuditEvent
from portal.timeutil import utcnow

__all__ = ["SYSTEM", "Actor", "record", "snapshot"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted: a portal user, an admin key, the CLI or the system; with the request's IP and id."""

    type: str
    id: str | None = None
    label: str = ""
    ip: str | None = None
    request_id: str | None = None


SYSTEM = Actor(type="system", label="system")

_SECRET_FIELDS = frozenset({"key_hash", "password_hash", "ciphertext", "secret", "api_key", "key"})


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes):
        return "<redacted>"
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return value


def snapshot(obj: Any, *, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The audit view of an ORM object: its column values, secrets redacted, JSON-safe."""
    table = obj.__table__
    mapper = obj.__mapper__
    out: dict[str, Any] = {}
    for column in table.columns:
        if column.key in exclude:
            continue
        attr = mapper.get_property_by_column(column).key
        value = getattr(obj, attr)
        out[column.name] = (
            "<redacted>" if column.name in _SECRET_FIELDS and value is not None else _jsonable(value)
        )
    return out


async def record(
    session: AsyncSession,
    actor: Actor,
    action: str,
    *,
    target_type: str = "",
    target_id: object = None,
    tenant_id: uuid.UUID | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit event (e.g. ``key.revoked``) to ``session``; it commits with the caller's change
    (``seq``, ``prev_hash`` and ``hash`` are set at that commit)."""
    event = AuditEvent(
        created_at=utcnow(),
        actor_type=actor.type,
        actor_id=actor.id,
        actor_label=actor.label,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        tenant_id=tenant_id,
        before=_jsonable(before) if before is not None else None,
        after=_jsonable(after) if after is not None else None,
        ip=actor.ip,
        request_id=actor.request_id,
    )
    session.add(event)
    await session.flush()
    track(session.sync_session, event)
    return event
