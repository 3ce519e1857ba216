"""The audit hash chain: the canonical form of an event, its hash, and the sealing of new events.

Every audit event carries ``seq`` (1, 2, 3, ... with no gap), ``prev_hash`` (the previous event's
``hash``; :data:`GENESIS` for seq 1) and ``hash``::

    hash = sha256(canonical(event)).hexdigest()
    canonical(event) = UTF-8 of compact JSON with sorted keys (separators "," and ":", non-ASCII kept)
        of {"seq", "id", "created_at", "actor_type", "actor_id", "actor_label", "action", "target_type",
            "target_id", "tenant_id", "before", "after", "ip", "request_id", "prev_hash"}

``created_at`` is written as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, microseconds: every backend stores
them exactly, MariaDB as ``DATETIME(6)``), ``tenant_id`` as a UUID
string, ``before``/``after`` as the stored JSON objects (or ``null``).

Sealing happens when the event's transaction commits (a ``before_commit`` hook), not when it is
recorded: the transaction first flushes every pending change (so it holds all the row locks it will
ever need), then locks the one-row chain head (``SELECT ... FOR UPDATE``), numbers and hashes its
events, moves the head and commits. A transaction holding the head lock therefore waits for nothing
else, so the head cannot take part in a deadlock with the row-lock order of ``portal.db.locking``,
and concurrent writers on any number of instances append to one chain in commit order. SQLite
ignores ``FOR UPDATE``; there the database-wide write lock, taken when the event row was inserted,
serializes the writers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from sqlalchemy import event, inspect, select, update
from sqlalchemy.orm import Session, SessionTransaction

from portal.db.models import CHAIN_HEAD_ID, AuditChainHead, AuditEvent

__all__ = ["GENESIS", "canonical", "canonical_fields", "event_hash", "lock_head", "track"]

GENESIS = "0" * 64
"""The ``prev_hash`` of the first event ever recorded."""

_PENDING = "portal.audit.unsealed"


def _timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_fields(event: AuditEvent) -> dict[str, Any]:
    """The fields of ``event`` that its hash covers, as JSON values."""
    return {
        "seq": event.seq,
        "id": event.id,
        "created_at": _timestamp(event.created_at),
        "actor_type": event.actor_type,
        "actor_id": event.actor_id,
        "actor_label": event.actor_label,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "tenant_id": None if event.tenant_id is None else str(event.tenant_id),
        "before": event.before,
        "after": event.after,
        "ip": event.ip,
        "request_id": event.request_id,
        "prev_hash": event.prev_hash,
    }


def canonical(event: AuditEvent) -> bytes:
    """The bytes the hash of ``event`` is computed over (see the module docstring)."""
    return json.dumps(
        canonical_fields(event), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def event_hash(event: AuditEvent) -> str:
    """SHA-256 (hex) of the canonical form of ``event``."""
    return hashlib.sha256(canonical(event)).hexdigest()


def track(session: Session, audit_event: AuditEvent) -> None:
    """Note ``audit_event`` to be sealed into the chain when ``session``'s transaction commits."""
    session.info.setdefault(_PENDING, []).append(audit_event)


def lock_head(session: Session) -> tuple[int, str]:
    """Lock the chain head for the rest of the transaction; returns its ``(seq, hash)``."""
    row = session.execute(
        select(AuditChainHead.seq, AuditChainHead.hash)
        .where(AuditChainHead.id == CHAIN_HEAD_ID)
        .with_for_update()
    ).first()
    if row is None:
        raise RuntimeError("the audit chain head is missing: run `portal migrate`")
    return int(row.seq), str(row.hash)


def _seal(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint: sealed with the outermost commit
    pending: list[AuditEvent] = session.info.pop(_PENDING, [])
    alive = [e for e in pending if inspect(e).persistent]  # rolled-back savepoints drop theirs
    if not alive:
        return
    session.flush()
    seq, head_hash = lock_head(session)
    for audit_event in sorted(alive, key=lambda e: e.id):
        seq += 1
        audit_event.seq = seq
        audit_event.prev_hash = head_hash
        audit_event.hash = head_hash = event_hash(audit_event)
    session.execute(
        update(AuditChainHead).where(AuditChainHead.id == CHAIN_HEAD_ID).values(seq=seq, hash=head_hash)
    )


def _forget(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


event.listen(Session, "before_commit", _seal)
event.listen(Session, "after_transaction_end", _forget)
