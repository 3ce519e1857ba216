"""``portal retention run``: apply the retention settings now (or, with ``--dry-run``, count)."""

from __future__ import annotations

import sys

import click
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.audit.service import Actor
from portal.cli_audit import with_sessions
from portal.cli_common import current_settings, emit, json_option
from portal.retention.service import RetentionReport, TableReport

__all__ = ["retention"]

_SETTING = {
    "request_logs": "PORTAL_REQUEST_LOG_RETENTION_DAYS",
    "audit_events": "PORTAL_AUDIT_RETENTION_DAYS",
}


@click.group()
def retention() -> None:
    """Delete old request logs and audit events (rollups and spend totals are never deleted)."""


def _line(table: TableReport, dry_run: bool) -> str:
    if table.cutoff is None:
        return f"{table.table}: kept forever ({_SETTING[table.table]}=0)"
    before = f"created before {table.cutoff.isoformat(timespec='seconds')} ({table.days} days)"
    if dry_run:
        return f"{table.table}: would delete {table.would_delete} rows {before}"
    text = f"{table.table}: deleted {table.deleted} rows {before} in {table.batches} batches"
    if table.files:
        text += f"; archived to {len(table.files)} files"
    if table.error:
        text += f"; STOPPED: {table.error}"
    return text


@retention.command("run")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@json_option
def run(dry_run: bool, as_json: bool) -> None:
    """Run retention once, as the background task does (exit 1 if a table's run failed or another
    instance is running it)."""
    from portal.retention.service import run_retention

    settings = current_settings()
    actor = Actor(type="cli", label="portal retention run")

    async def work(sessions: async_sessionmaker[AsyncSession]) -> RetentionReport:
        redis = None
        if settings.redis_url and not dry_run:
            from redis.asyncio import Redis

            redis = Redis.from_url(settings.redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
        try:
            return await run_retention(settings, sessions, redis, actor, dry_run=dry_run)
        finally:
            if redis is not None:
                await redis.aclose()

    report = with_sessions(work)
    if as_json:
        emit(
            {"dry_run": dry_run, "busy": report.busy, "tables": [t.as_dict() for t in report.tables]},
            as_json=True,
        )
    elif report.busy:
        click.echo("portal: another instance is running retention now; try again later", err=True)
    else:
        for table in report.tables:
            click.echo(_line(table, dry_run))
        click.echo("spend_daily and spend totals: never deleted")
    sys.exit(0 if report.ok else 1)
