"""One retention run: delete request logs older than ``request_log_retention_days`` and audit events
older than ``audit_retention_days`` (0 keeps them forever), in batches of ``retention_batch_size``.

Each batch is its own short transaction (select the ids, archive the rows when
``retention_archive_dir`` is set, delete by id), so the spend writer is never blocked for long; a
failed archive write stops that table's run before its delete. Rollups (``spend_daily``) and the
spend totals are never touched. The run holds a :mod:`~portal.retention.guard` so that only one
instance works at a time; a dry run only counts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec
from redis.asyncio import Redis
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.api.schemas import money
from portal.audit.export import event_line
from portal.audit.prune import AuditChainBrokenError, count_prunable, prune_audit
from portal.audit.service import Actor
from portal.config import Settings
from portal.db.models import AuditEvent, RequestLog
from portal.retention.archive import ArchiveError, write_archive
from portal.retention.guard import Guard, guard_for
from portal.timeutil import utcnow

__all__ = ["RetentionReport", "TableReport", "run_retention"]

log = logging.getLogger(__name__)
_LOGS = RequestLog.__table__
_LOST = "the retention guard was lost (another instance took over); stopped"


@dataclass(slots=True)
class TableReport:
    """One table: kept forever (no ``cutoff``), or rows deleted (would be, on a dry run) before ``cutoff``."""

    table: str
    days: int
    cutoff: dt.datetime | None = None
    deleted: int = 0
    batches: int = 0
    would_delete: int | None = None
    files: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON values."""
        return {
            "table": self.table,
            "days": self.days,
            "cutoff": None if self.cutoff is None else self.cutoff.isoformat(),
            "deleted": self.deleted,
            "batches": self.batches,
            "would_delete": self.would_delete,
            "files": self.files,
            "error": self.error,
        }


@dataclass(slots=True)
class RetentionReport:
    """One run: ``busy`` when another instance held the guard (nothing done), else one report per table."""

    dry_run: bool
    busy: bool = False
    tables: list[TableReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No table failed and the run was not skipped."""
        return not self.busy and all(t.error is None for t in self.tables)


def _log_line(row: Any) -> str:
    values = {name: money(v) if isinstance(v, Decimal) else v for name, v in row._mapping.items()}
    return msgspec.json.encode(values).decode() + "\n"


async def _archive(directory: str, table: str, first: int, last: int, lines: list[str]) -> str:
    return str(await asyncio.to_thread(write_archive, directory, table, first, last, lines))


async def _prune_logs(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, report: TableReport, guard: Guard
) -> None:
    archive_dir = settings.retention_archive_dir
    columns: Sequence[Any] = list(_LOGS.c) if archive_dir else [_LOGS.c.id]
    while True:
        async with sessions() as session, session.begin():
            rows = (
                await session.execute(
                    select(*columns)
                    .where(_LOGS.c.created_at < report.cutoff)
                    .order_by(_LOGS.c.created_at)
                    .limit(settings.retention_batch_size)
                )
            ).all()
            if not rows:
                return
            ids = [row.id for row in rows]
            if archive_dir:
                lines = [_log_line(row) for row in rows]
                report.files.append(await _archive(archive_dir, "request_logs", min(ids), max(ids), lines))
            await session.execute(delete(RequestLog).where(RequestLog.id.in_(ids)))
        report.deleted += len(ids)
        report.batches += 1
        if not await guard.renew():
            report.error = _LOST
            return


async def _prune_events(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    report: TableReport,
    guard: Guard,
    actor: Actor,
) -> None:
    archive_dir = settings.retention_archive_dir

    async def archive(events: Sequence[AuditEvent]) -> str | None:
        if not archive_dir:
            return None
        lines = [event_line(event) for event in events]
        return await _archive(archive_dir, "audit_events", events[0].seq or 0, events[-1].seq or 0, lines)

    async def still_ours() -> bool:
        if await guard.renew():
            return True
        report.error = _LOST
        return False

    assert report.cutoff is not None
    result = await prune_audit(
        sessions,
        actor,
        report.cutoff,
        batch_size=settings.retention_batch_size,
        archive=archive,
        between_batches=still_ours,
    )
    report.deleted, report.batches, report.files = result.deleted, result.batches, result.files


async def _count(sessions: async_sessionmaker[AsyncSession], report: TableReport) -> int:
    assert report.cutoff is not None
    async with sessions() as session:
        if report.table == "audit_events":
            return await count_prunable(session, report.cutoff)
        query = select(func.count()).select_from(_LOGS).where(_LOGS.c.created_at < report.cutoff)
        return int(await session.scalar(query) or 0)


async def run_retention(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    redis: Redis | None,
    actor: Actor,
    *,
    dry_run: bool = False,
    now: dt.datetime | None = None,
    guard: Guard | None = None,
) -> RetentionReport:
    """Run retention once (or count what it would delete, with ``dry_run``)."""
    now = now or utcnow()
    report = RetentionReport(dry_run=dry_run)
    for table, days in (
        ("request_logs", settings.request_log_retention_days),
        ("audit_events", settings.audit_retention_days),
    ):
        report.tables.append(TableReport(table, days, now - dt.timedelta(days=days) if days > 0 else None))
    due = [t for t in report.tables if t.cutoff is not None]
    if dry_run:
        for table_report in due:
            table_report.would_delete = await _count(sessions, table_report)
        return report
    if not due:
        return report
    guard = guard or guard_for(sessions, redis)
    if not await guard.acquire():
        report.busy = True
        return report
    try:
        for table_report in due:
            try:
                if table_report.table == "request_logs":
                    await _prune_logs(sessions, settings, table_report, guard)
                else:
                    await _prune_events(sessions, settings, table_report, guard, actor)
            except (ArchiveError, AuditChainBrokenError) as exc:
                table_report.error = str(exc)
                log.error("retention of %s stopped: %s", table_report.table, exc)
    finally:
        await guard.release()
    return report
