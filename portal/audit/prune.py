"""Pruning the oldest audit events (retention) without breaking the hash chain.

Only a prefix of the chain is ever removed: events are taken oldest first by ``seq`` and only up to
the first event that is not older than the cutoff. Each batch is one transaction that locks the chain
head, checks the batch is intact (an edited event is evidence: it is never pruned), optionally hands
it to the archive, deletes it, and records an ``audit.pruned`` event (itself chained) naming how many
events were removed and the seq and hash it pruned through. The oldest remaining event's
``prev_hash`` is that hash: :mod:`portal.audit.verify` starts there.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.audit.chain import event_hash, lock_head
from portal.audit.service import Actor, record
from portal.audit.verify import PRUNED_ACTION
from portal.db.models import AuditEvent

__all__ = ["AuditChainBrokenError", "PruneResult", "count_prunable", "prune_audit"]

Archive = Callable[[Sequence[AuditEvent]], Awaitable[str | None]]


class AuditChainBrokenError(Exception):
    """A batch about to be pruned is not intact; nothing was deleted."""


@dataclass(slots=True)
class PruneResult:
    """What a pruning run removed: events, batches, archive files, the seq it pruned through."""

    deleted: int = 0
    batches: int = 0
    through_seq: int | None = None
    files: list[str] = field(default_factory=list)


async def _bound(session: AsyncSession, cutoff: dt.datetime) -> ColumnElement[bool]:
    """Events below the first one at or after ``cutoff`` (so the prunable part is a prefix)."""
    first_kept = await session.scalar(select(func.min(AuditEvent.seq)).where(AuditEvent.created_at >= cutoff))
    if first_kept is not None:
        return AuditEvent.seq < first_kept
    newest = await session.scalar(select(func.max(AuditEvent.seq)))
    return AuditEvent.seq <= (newest or 0)


async def count_prunable(session: AsyncSession, cutoff: dt.datetime) -> int:
    """How many events a prune with ``cutoff`` would remove."""
    bound = await _bound(session, cutoff)
    return int(await session.scalar(select(func.count()).where(AuditEvent.seq.is_not(None), bound)) or 0)


def _check_intact(events: Sequence[AuditEvent]) -> None:
    for event in events:
        if event.hash != event_hash(event):
            raise AuditChainBrokenError(
                f"audit event {event.id} (seq {event.seq}) does not match its hash; refusing to prune it "
                "(run `portal audit verify`)"
            )
    for previous, event in itertools.pairwise(events):
        if event.seq != (previous.seq or 0) + 1 or event.prev_hash != previous.hash:
            raise AuditChainBrokenError(
                f"the audit chain breaks at event {event.id} (seq {event.seq}); refusing to prune "
                "(run `portal audit verify`)"
            )


async def prune_audit(
    sessions: async_sessionmaker[AsyncSession],
    actor: Actor,
    cutoff: dt.datetime,
    *,
    batch_size: int,
    archive: Archive | None = None,
    between_batches: Callable[[], Awaitable[bool]] | None = None,
) -> PruneResult:
    """Delete the events older than ``cutoff``, oldest first, ``batch_size`` per transaction.

    ``archive`` receives each batch before it is deleted (an exception stops the run, the batch
    stays); ``between_batches`` returning False stops the run (e.g. the instance lost its guard).
    """
    result = PruneResult()
    async with sessions() as session:
        bound = await _bound(session, cutoff)
    while True:
        async with sessions() as session, session.begin():
            await session.run_sync(lock_head)
            events = (
                await session.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.seq.is_not(None), bound)
                    .order_by(AuditEvent.seq)
                    .limit(batch_size)
                )
            ).all()
            if not events:
                return result
            _check_intact(events)
            if archive is not None and (path := await archive(events)) is not None:
                result.files.append(path)
            first, last = events[0], events[-1]
            await session.execute(
                delete(AuditEvent)
                .where(AuditEvent.id.in_([e.id for e in events]))
                .execution_options(synchronize_session=False)
            )
            await record(
                session,
                actor,
                PRUNED_ACTION,
                target_type="audit",
                after={
                    "deleted": len(events),
                    "from_seq": first.seq,
                    "through_seq": last.seq,
                    "through_hash": last.hash,
                    "older_than": cutoff.isoformat(),
                },
            )
        result.deleted += len(events)
        result.batches += 1
        result.through_seq = last.seq
        if between_batches is not None and not await between_batches():
            return result
