"""The batched writer: request logs, daily rollups and lifetime spend, written off the request path.

The proxy calls :meth:`SpendWriter.submit` (no I/O, no await). A background task writes what has
accumulated every ``interval_s`` (1 s) or as soon as ``batch_size`` records wait, in ONE transaction per
batch: the request-log rows, an atomic increment of each ``spend_daily`` bucket (upsert), and
increments of ``spend_total`` on the tenants, users and keys involved (plus their ``last_used_at``).
Increments, not read-modify-write, so any number of instances can write at once and totals stay exact.
A failed batch is kept and retried; :meth:`close` flushes everything (graceful shutdown).

Taps: callables given every newly submitted record once, in the same loop but before (and whatever
the outcome of) the database write; metrics and the access log are taps, so they cost the request
path nothing. Payloads (tenants that store prompts) are redacted here, never on the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import case, insert, literal, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.db.models import ApiKey, RequestLog, SpendDaily, Tenant, User
from portal.ops.metrics import WRITER_FLUSH_ERRORS, WRITER_FLUSHES, WRITER_QUEUE
from portal.spend.payloads import PayloadFormatter
from portal.spend.records import CallRecord

__all__ = ["SpendWriter"]

log = logging.getLogger(__name__)
BatchHook = Callable[[AsyncSession, list[CallRecord]], Any]
Tap = Callable[[list[CallRecord]], None]


def bucket_of(record: CallRecord) -> str:
    """The rollup bucket key: day x tenant x user x key x model x provider."""
    parts = (
        record.created_at.date().isoformat(),
        record.tenant_id,
        record.user_id,
        record.api_key_id,
        record.model or "",
        record.provider or "",
    )
    return hashlib.sha256("|".join("" if p is None else str(p) for p in parts).encode()).hexdigest()


@dataclass(slots=True)
class _Rollup:
    day: Any
    tenant_id: uuid.UUID | None
    user_id: uuid.UUID | None
    api_key_id: uuid.UUID | None
    model: str
    provider: str
    requests: int = 0
    errors: int = 0
    cached_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal = Decimal(0)
    latency_ms_sum: float = 0.0


def _has_payload(r: CallRecord) -> bool:
    return r.prompt_payload is not None or r.response_payload is not None


def _log_row(r: CallRecord) -> dict[str, Any]:
    return {
        "request_id": r.request_id,
        "created_at": r.created_at,
        "tenant_id": r.tenant_id,
        "user_id": r.user_id,
        "api_key_id": r.api_key_id,
        "key_prefix": r.key_prefix,
        "endpoint": r.endpoint,
        "model": r.model,
        "deployment_id": r.deployment_id,
        "provider": r.provider,
        "upstream_model": r.upstream_model,
        "status_code": r.status_code,
        "error_type": r.error_type,
        "error_message": (r.error_message or "")[:1000] or None,
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "total_tokens": r.prompt_tokens + r.completion_tokens,
        "cost": r.cost,
        "latency_ms": r.latency_ms,
        "ttft_ms": r.ttft_ms,
        "stream": r.stream,
        "cached": r.cached,
        "estimated": r.estimated,
        "attempts": r.attempts,
        "client_ip": r.client_ip,
    }


def _log_rows(batch: list[CallRecord], payloads: PayloadFormatter | None) -> list[dict[str, Any]]:
    """The request-log rows of a batch, in order; the payload columns are bound only when a record
    of the batch has a payload (the common case binds no empty columns)."""
    rows = [_log_row(r) for r in batch]
    if any(_has_payload(r) for r in batch):
        for r, row in zip(batch, rows, strict=True):
            prompt = response = None
            if payloads is not None and _has_payload(r):
                prompt, response = payloads.render(r)
            row["prompt"], row["response"] = prompt, response
    return rows


def _rollups(records: Iterable[CallRecord]) -> dict[str, _Rollup]:
    out: dict[str, _Rollup] = {}
    for r in records:
        key = bucket_of(r)
        roll = out.get(key)
        if roll is None:
            roll = out[key] = _Rollup(
                r.created_at.date(), r.tenant_id, r.user_id, r.api_key_id, r.model or "", r.provider or ""
            )
        roll.requests += 1
        roll.errors += r.is_error
        roll.cached_requests += r.cached
        roll.prompt_tokens += r.prompt_tokens
        roll.completion_tokens += r.completion_tokens
        roll.cost += r.cost
        roll.latency_ms_sum += r.latency_ms
    return out


_SUMMED = (
    "requests",
    "errors",
    "cached_requests",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "latency_ms_sum",
)


async def _upsert_rollups(session: AsyncSession, rollups: dict[str, _Rollup]) -> None:
    rows = [
        {
            "bucket": key,
            "day": r.day,
            "tenant_id": r.tenant_id,
            "user_id": r.user_id,
            "api_key_id": r.api_key_id,
            "model": r.model,
            "provider": r.provider,
            **{c: getattr(r, c) for c in _SUMMED},
        }
        for key, r in sorted(rollups.items())
    ]
    if not rows:
        return
    dialect = session.bind.dialect.name
    columns = SpendDaily.__table__.c
    stmt: Any
    if dialect == "postgresql":
        pg = postgresql.insert(SpendDaily)
        stmt = pg.on_conflict_do_update(
            index_elements=[columns.bucket], set_={c: columns[c] + pg.excluded[c] for c in _SUMMED}
        )
    elif dialect == "sqlite":
        lite = sqlite.insert(SpendDaily)
        stmt = lite.on_conflict_do_update(
            index_elements=[columns.bucket], set_={c: columns[c] + lite.excluded[c] for c in _SUMMED}
        )
    else:
        my = mysql.insert(SpendDaily)
        stmt = my.on_duplicate_key_update({c: columns[c] + my.inserted[c] for c in _SUMMED})
    await session.execute(stmt, rows)


async def _add_spend(session: AsyncSession, records: list[CallRecord]) -> None:
    per: dict[tuple[type[Any], uuid.UUID], Decimal] = defaultdict(Decimal)
    last_used: dict[uuid.UUID, Any] = {}
    for r in records:
        for model, subject in ((Tenant, r.tenant_id), (User, r.user_id), (ApiKey, r.api_key_id)):
            if subject is not None:
                per[(model, subject)] += r.cost
        if r.api_key_id is not None and r.status_code < 500:
            previous = last_used.get(r.api_key_id)
            last_used[r.api_key_id] = r.created_at if previous is None else max(previous, r.created_at)
    for (model, subject), amount in sorted(per.items(), key=lambda kv: (kv[0][0].__name__, str(kv[0][1]))):
        values: dict[str, Any] = {}
        if amount:
            values["spend_total"] = model.spend_total + amount
        if model is ApiKey and subject in last_used:
            # typed as the column, so the time reaches every backend in UTC (MariaDB drops the zone)
            seen = literal(last_used[subject], ApiKey.__table__.c.last_used_at.type)
            values["last_used_at"] = case(
                (ApiKey.last_used_at.is_(None), seen),
                (ApiKey.last_used_at < seen, seen),
                else_=ApiKey.last_used_at,
            )
        if values:
            await session.execute(update(model).where(model.id == subject).values(**values))


class SpendWriter:
    """Accumulates :class:`CallRecord`s and writes them in batches from a background task."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        interval_s: float = 1.0,
        batch_size: int = 500,
        max_pending: int = 200_000,
        hooks: Iterable[BatchHook] = (),
        spill_dir: Path | None = None,
        taps: Iterable[Tap] = (),
        payloads: PayloadFormatter | None = None,
    ) -> None:
        self._spill_dir = spill_dir
        self._sessions = sessions
        self._interval = interval_s
        self._batch_size = batch_size
        self._max_pending = max_pending
        self._pending: list[CallRecord] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._closing = False
        self.hooks = list(hooks)
        self.taps = list(taps)
        self.payloads = payloads
        self._fresh: list[CallRecord] = []
        self.written = 0
        self.failures = 0

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        """Start the background flushing task (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="portal-spend-writer")

    def submit(self, record: CallRecord) -> None:
        """Queue one record; never blocks, never does I/O."""
        self._pending.append(record)
        self._fresh.append(record)
        if len(self._pending) >= self._batch_size:
            self._wake.set()
        if len(self._pending) > self._max_pending:
            log.error("spend writer backlog above %d records: is the database down?", self._max_pending)

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # a failed batch stays queued; log and retry after a pause
                self.failures += 1
                WRITER_FLUSH_ERRORS.inc()
                log.exception("spend writer: batch failed, will retry")
                await asyncio.sleep(min(5.0, self._interval * 4))

    def run_taps(self) -> None:
        """Give every record submitted since the last call to each tap (once); update the queue gauge."""
        fresh, self._fresh = self._fresh, []
        if fresh:
            for tap in self.taps:
                try:
                    tap(fresh)
                except Exception:  # a broken tap must not stop the writer
                    log.exception("spend writer: tap %r failed", tap)
        WRITER_QUEUE.set(len(self._pending))

    async def flush(self) -> int:
        """Run the taps, then write everything queued now; returns the number of records written."""
        self.run_taps()
        written = 0
        async with self._lock:
            while self._pending:
                batch = self._pending[: self._batch_size]
                await self._write(batch)
                WRITER_FLUSHES.inc()
                del self._pending[: len(batch)]
                written += len(batch)
        self.written += written
        WRITER_QUEUE.set(len(self._pending))
        return written

    async def _write(self, batch: list[CallRecord]) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(insert(RequestLog), _log_rows(batch, self.payloads))
            await _upsert_rollups(session, _rollups(batch))
            await _add_spend(session, batch)
            for hook in self.hooks:
                result = hook(session, batch)
                if asyncio.iscoroutine(result):
                    await result

    async def close(self) -> None:
        """Stop the background task and write everything still queued.

        If the database cannot take them, the records are spilled to a JSONL file in ``spill_dir`` (and
        the path logged) rather than lost.
        """
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self.flush()
        except Exception:
            self._spill()

    def _spill(self) -> None:
        count = len(self._pending)
        if self._spill_dir is None:
            log.error("spend writer: database unavailable at shutdown; %d records lost", count)
            return
        self._spill_dir.mkdir(parents=True, exist_ok=True)
        path = self._spill_dir / f"unwritten-spend-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.jsonl"
        with path.open("wb") as out:
            for record in self._pending:
                if _has_payload(record):
                    prompt, response = self.payloads.render(record) if self.payloads else (None, None)
                    record.prompt_payload, record.response_payload = prompt, response
                out.write(msgspec.json.encode(record) + b"\n")
        log.error("spend writer: database unavailable at shutdown; %d records saved to %s", count, path)
        self._pending.clear()
