"""``portal audit``: verify the audit log's hash chain, and export the log as JSON lines."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.cli_common import CLEAR, DATETIME, current_settings, emit, fail, json_option
from portal.config import Settings

__all__ = ["audit", "with_sessions"]

T = TypeVar("T")


async def _sessions_run(
    settings: Settings, work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]
) -> T:
    from portal.db.engine import create_engine, create_session_factory

    engine = create_engine(settings)
    try:
        return await work(create_session_factory(engine))
    finally:
        await engine.dispose()


def with_sessions(work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]) -> T:
    """Run ``work`` with a session factory on the configured database; a database error is one line."""
    settings = current_settings()
    try:
        return asyncio.run(_sessions_run(settings, work))
    except (SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        fail(f"database error ({settings.database_dialect}): {reason}")


@click.group()
def audit() -> None:
    """The audit log: verify its hash chain, export it."""


@audit.command("verify")
@json_option
def verify(as_json: bool) -> None:
    """Walk the hash chain in order; exit 1 and name the first broken link if it is not intact."""
    from portal.audit.verify import verify_chain

    report = with_sessions(verify_chain)
    if as_json:
        emit(report.as_dict(), as_json=True)
    elif report.broken is None:
        span = f" (seq {report.first_seq}..{report.last_seq})" if report.events else ""
        click.echo(f"audit chain intact: {report.events} events{span}")
    else:
        where = f"event {report.broken.event_id}" if report.broken.event_id is not None else "the chain"
        seq = f" (seq {report.broken.seq})" if report.broken.seq is not None else ""
        click.echo(
            f"audit chain BROKEN at {where}{seq}: {report.broken.problem}\n"
            f"({report.events} events before it are intact)",
            err=True,
        )
    sys.exit(0 if report.ok else 1)


def _moment(value: Any) -> dt.datetime | None:
    return None if value is None or value is CLEAR else value


@audit.command("export")
@click.option("--since", type=DATETIME, default=None, help="Only events at or after this ISO time (UTC).")
@click.option("--until", type=DATETIME, default=None, help="Only events at or before this ISO time (UTC).")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (default stdout).",
)
def export(since: Any, until: Any, output: Path | None) -> None:
    """Write the audit events as JSON lines in chain order (with seq, prev_hash and hash)."""
    from portal.audit.export import event_line, events_in_chain_order

    async def write(stream: IO[str], sessions: async_sessionmaker[AsyncSession]) -> int:
        count = 0
        async with sessions() as session:
            async for batch in events_in_chain_order(session, since=_moment(since), until=_moment(until)):
                stream.write("".join(event_line(event) for event in batch))
                count += len(batch)
        return count

    if output is None:
        count = with_sessions(lambda sessions: write(sys.stdout, sessions))
    else:
        try:
            with output.open("w", encoding="utf-8") as file:
                count = with_sessions(lambda sessions: write(file, sessions))
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror or exc}")
    click.echo(f"exported {count} audit events" + (f" to {output}" if output else ""), err=True)
