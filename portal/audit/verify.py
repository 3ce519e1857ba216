"""Verification of the audit hash chain: walk the events in ``seq`` order, report the first broken link.

A chain is intact when:
- every event has a ``seq``, and the seqs follow each other without a gap;
- every event's ``hash`` is the hash of its canonical form, and its ``prev_hash`` is the previous
  event's ``hash``;
- the oldest event is seq 1 with the genesis ``prev_hash``, or older events were pruned by retention
  and an ``audit.pruned`` event (itself in the chain) records the seq and hash it pruned through,
  which are the oldest remaining event's ``seq - 1`` and ``prev_hash`` (the chain's anchor);
- the newest event is the chain head (``audit_chain_head``), so no event was cut off the end.

The walk reads the head, the events (one streamed query) and the head again; if the chain moved in
between (a concurrent commit), it starts over, so a report always describes one consistent chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.audit.chain import GENESIS, event_hash
from portal.db.models import CHAIN_HEAD_ID, AuditChainHead, AuditEvent

__all__ = ["PRUNED_ACTION", "ChainBreak", "ChainReport", "verify_chain"]

PRUNED_ACTION = "audit.pruned"


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first broken link: the event where the chain breaks and what does not match."""

    event_id: int | None
    seq: int | None
    problem: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The result of a walk: ``ok``, the number of events checked, their seq range and anchor."""

    ok: bool
    events: int
    first_seq: int | None
    last_seq: int | None
    anchor: str | None
    head_seq: int
    head_hash: str
    broken: ChainBreak | None = None

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON values."""
        return {
            "ok": self.ok,
            "events": self.events,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "anchor": self.anchor,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "broken": None
            if self.broken is None
            else {"event_id": self.broken.event_id, "seq": self.broken.seq, "problem": self.broken.problem},
        }


async def _head(session: AsyncSession) -> tuple[int, str]:
    row = (
        await session.execute(
            select(AuditChainHead.seq, AuditChainHead.hash).where(AuditChainHead.id == CHAIN_HEAD_ID)
        )
    ).first()
    if row is None:
        raise RuntimeError("the audit chain head is missing: run `portal migrate`")
    return int(row.seq), str(row.hash)


def _link_problem(previous: AuditEvent | None, event: AuditEvent) -> str | None:
    """What is wrong with ``event`` as the successor of ``previous`` (None: the link holds)."""
    if previous is not None and event.seq != (previous.seq or 0) + 1:
        missing = (event.seq or 0) - (previous.seq or 0) - 1
        return (
            f"seq {event.seq} follows seq {previous.seq}: {missing} event(s) before it are missing"
            if missing > 0
            else f"seq {event.seq} repeats or goes back after seq {previous.seq}"
        )
    if previous is not None and event.prev_hash != previous.hash:
        return f"prev_hash {event.prev_hash} is not the previous event's hash {previous.hash}"
    computed = event_hash(event)
    if event.hash != computed:
        return f"content does not match its hash (stored {event.hash}, computed {computed})"
    return None


def _anchor_problem(first: AuditEvent, pruned: dict[int, str]) -> str | None:
    if first.seq == 1:
        return None if first.prev_hash == GENESIS else f"seq 1 has prev_hash {first.prev_hash}, not genesis"
    through = (first.seq or 0) - 1
    if pruned.get(through) == first.prev_hash:
        return None
    return (
        f"the chain starts at seq {first.seq}, but no {PRUNED_ACTION} event records pruning through "
        f"seq {through} with hash {first.prev_hash}: older events were removed"
    )


def _pruned_through(event: AuditEvent) -> tuple[int, str] | None:
    after = event.after or {}
    seq, digest = after.get("through_seq"), after.get("through_hash")
    if event.action == PRUNED_ACTION and isinstance(seq, int) and isinstance(digest, str):
        return seq, digest
    return None


async def _walk(session: AsyncSession, head: tuple[int, str]) -> ChainReport:
    head_seq, head_hash = head
    unchained = (
        await session.execute(select(AuditEvent.id).where(AuditEvent.seq.is_(None)).limit(1))
    ).scalar()
    count, first, previous = 0, None, None
    pruned: dict[int, str] = {}
    broken: ChainBreak | None = None
    if unchained is not None:
        broken = ChainBreak(unchained, None, "the event has no seq: it was written outside the chain")
    else:
        stream = await session.stream_scalars(
            select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=1000)
        )
        async for event in stream:
            problem = _link_problem(previous, event)
            if problem is not None:
                broken = ChainBreak(event.id, event.seq, problem)
                break
            if (through := _pruned_through(event)) is not None:
                pruned[through[0]] = through[1]
            if first is None:
                first = event
            count, previous = count + 1, event
            session.expunge(event)
        await stream.close()
    if broken is None and first is not None and (problem := _anchor_problem(first, pruned)):
        broken = ChainBreak(first.id, first.seq, problem)
    if broken is None and ((previous.seq, previous.hash) if previous else (0, GENESIS)) != head:
        last = f"seq {previous.seq}" if previous else "no event"
        broken = ChainBreak(
            previous.id if previous else None,
            previous.seq if previous else None,
            f"the chain head is seq {head_seq} (hash {head_hash}) but the newest event is {last}: "
            "events were removed from the end",
        )
    return ChainReport(
        ok=broken is None,
        events=count,
        first_seq=first.seq if first else None,
        last_seq=previous.seq if previous else None,
        anchor=first.prev_hash if first else None,
        head_seq=head_seq,
        head_hash=head_hash,
        broken=broken,
    )


async def verify_chain(sessions: async_sessionmaker[AsyncSession]) -> ChainReport:
    """Walk the whole audit chain and report whether it is intact (or where it first breaks).

    The head and every event are read from one snapshot of the database, so changes and pruning
    committed during the walk can neither break it nor be half seen."""
    async with sessions() as session, session.begin():
        await _snapshot(session)
        return await _walk(session, await _head(session))


async def _snapshot(session: AsyncSession) -> None:
    """Make every read of ``session``'s transaction see one snapshot (called before any read)."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":  # pysqlite opens no transaction for reads: each SELECT saw its own state
        await (await session.connection()).exec_driver_sql("BEGIN")
    else:
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
