"""Shared plumbing of the ``portal`` management commands (tenants, users, keys, models).

Each command runs in one database transaction: a change calls the domain services with the actor
``portal <command>`` (so it is audited like any other surface), commits, then publishes its effects
(forget cached keys, reload the catalog) to running instances over Redis when ``redis_url`` is set.
Output is a readable table, or JSON with ``--json``. Errors are one line on stderr, never a
traceback: exit status 1 for a refused change or an unreachable database, 2 for a usage error.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from enum import Enum
from typing import Any, NoReturn, TypeVar

import click
import msgspec
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from portal import audit
from portal.config import ConfigError, Settings, load_settings
from portal.errors import DomainError, ValidationFailedError

__all__ = [
    "CLEAR",
    "DATETIME",
    "JSON_OBJECT",
    "LIMIT",
    "apply_changes",
    "change",
    "creation",
    "current_settings",
    "emit",
    "emit_page",
    "fail",
    "json_option",
    "limit_options",
    "list_options",
    "page",
    "parse_after",
    "read",
    "row_view",
]

T = TypeVar("T")
_SECRET_COLUMNS = frozenset({"key_hash", "password_hash", "ciphertext"})


class _Clear:
    """The value of an update option given as ``none``: clear the field."""

    def __repr__(self) -> str:
        return "CLEAR"


CLEAR: Any = _Clear()


def fail(message: str, status: int = 1) -> NoReturn:
    """Print ``portal: message`` on stderr and exit with ``status``."""
    click.echo(f"portal: {message}", err=True)
    sys.exit(status)


def current_settings() -> Settings:
    """The settings (from the environment and ``PORTAL_CONFIG``); exit status 2 when they are invalid."""
    try:
        return load_settings()
    except ConfigError as exc:
        fail(str(exc), 2)


def _domain_message(exc: DomainError) -> str:
    if isinstance(exc, ValidationFailedError) and exc.fields:
        return exc.message + ": " + "; ".join(f"{name}: {text}" for name, text in exc.fields.items())
    return exc.message


async def _publish(settings: Settings, session: AsyncSession) -> None:
    from portal.db.effects import publish_effects, take_effects

    effects = take_effects(session)
    if not effects or not settings.redis_url:
        return
    from redis.asyncio import Redis

    redis = Redis.from_url(settings.redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
    try:
        await publish_effects(redis, effects)
    except (OSError, TimeoutError, Exception) as exc:  # the change is committed; only the notice failed
        click.echo(
            f"portal: warning: could not notify running instances over Redis ({exc}); they apply "
            f"the change within key_cache_ttl_s ({settings.key_cache_ttl_s} s)",
            err=True,
        )
    finally:
        await redis.aclose()


async def _session_run(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]], commit: bool) -> T:
    from portal.db.engine import create_engine, create_session_factory

    engine = create_engine(settings)
    try:
        async with create_session_factory(engine)() as session:
            async with session.begin():
                result = await work(session)
                if not commit:
                    await session.rollback()
            if commit:
                await _publish(settings, session)
            return result
    finally:
        await engine.dispose()


def _run(work: Callable[[AsyncSession], Awaitable[T]], *, commit: bool) -> T:
    settings = current_settings()
    try:
        return asyncio.run(_session_run(settings, work, commit))
    except DomainError as exc:
        fail(_domain_message(exc))
    except IntegrityError:
        fail("this conflicts with an existing record (a name or value that must be unique)")
    except (SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        fail(f"database error ({settings.database_dialect}): {reason}")


def read(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in a read-only transaction (rolled back)."""
    return _run(work, commit=False)


def change(command: str, work: Callable[[AsyncSession, audit.Actor], Awaitable[T]]) -> T:
    """Run ``work`` with the actor ``portal <command>`` in one transaction; commit, then publish the
    change's effects to running instances."""
    actor = audit.Actor(type="cli", label=f"portal {command}")

    async def run(session: AsyncSession) -> T:
        return await work(session, actor)

    return _run(run, commit=True)


# --- values ------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        from portal.api.schemas import money

        return money(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def row_view(obj: Any, **extra: Any) -> dict[str, Any]:
    """A database row as plain JSON values (money as exact decimal strings; no secret hashes)."""
    mapper = obj.__mapper__
    out: dict[str, Any] = {}
    for column in obj.__table__.columns:
        if column.name in _SECRET_COLUMNS:
            continue
        out[column.name] = _jsonable(getattr(obj, mapper.get_property_by_column(column).key))
    out.update({name: _jsonable(value) for name, value in extra.items()})
    return out


class _JsonObject(click.ParamType[Any]):
    name = "JSON"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        if value.lower() == "none":
            return CLEAR
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            self.fail(f"not JSON: {exc}", param, ctx)
        if not isinstance(parsed, dict):
            self.fail('a JSON object, e.g. \'{"team": "a"}\'', param, ctx)
        return parsed


class _Limit(click.ParamType[Any]):
    name = "N|none"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        if value.lower() == "none":
            return CLEAR
        try:
            number = int(value)
        except ValueError:
            self.fail(f"{value!r} is not a whole number (or none)", param, ctx)
        if number < 1:
            self.fail("at least 1 (or none for no limit)", param, ctx)
        return number


class _DateTime(click.ParamType[Any]):
    name = "TIME|none"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        if value.lower() in {"none", "never"}:
            return CLEAR
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time such as 2030-01-31T12:00:00Z", param, ctx)
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


JSON_OBJECT = _JsonObject()
LIMIT = _Limit()
DATETIME = _DateTime()


def apply_changes(**options: Any) -> dict[str, Any]:
    """The fields an update command was given (``None`` = not given; ``none`` on the command line
    clears the field; a cleared ``metadata`` becomes ``{}``)."""
    cleared: dict[str, Any] = {"metadata": {}}
    return {
        name: (cleared.get(name) if value is CLEAR else value)
        for name, value in options.items()
        if value is not None
    }


def creation(**options: Any) -> dict[str, Any]:
    """The values of a create command's options (``none`` means the same as leaving it out)."""
    return {name: value for name, value in options.items() if value is not None and value is not CLEAR}


# --- options -----------------------------------------------------------------------------------------

F = TypeVar("F", bound=Callable[..., Any])


def json_option(fn: F) -> F:
    decorated: F = click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table."
    )(fn)
    return decorated


def limit_options(fn: F) -> F:
    """``--rpm-limit``, ``--tpm-limit`` and ``--max-parallel`` (a number, or ``none`` to clear)."""
    for name, text in reversed(
        [
            ("--rpm-limit", "requests per minute"),
            ("--tpm-limit", "tokens per minute"),
            ("--max-parallel", "calls in flight at once"),
        ]
    ):
        fn = click.option(name, type=LIMIT, default=None, help=f"Limit: {text} (none: no limit).")(fn)
    return fn


def list_options(fn: F) -> F:
    """``--limit`` and ``--after`` (the cursor a previous page printed)."""
    fn = click.option("--after", default=None, help="Cursor: continue after this id (from the last page).")(
        fn
    )
    decorated: F = click.option(
        "--limit", type=click.IntRange(1, 1000), default=100, show_default=True, help="Rows per page."
    )(fn)
    return decorated


# --- output ------------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True) if value else "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _print_json(data: Any) -> None:
    click.echo(msgspec.json.format(msgspec.json.encode(data)).decode())


def emit(data: Mapping[str, Any], *, as_json: bool) -> None:
    """Print one record: JSON, or one ``field  value`` line per field."""
    if as_json:
        _print_json(data)
        return
    width = max((len(name) for name in data), default=0)
    for name, value in data.items():
        click.echo(f"{name.ljust(width)}  {_cell(value)}")


def emit_page(
    rows: Sequence[Mapping[str, Any]], next_cursor: str | None, *, as_json: bool, columns: Sequence[str]
) -> None:
    """Print a list: JSON ``{"items", "next_cursor"}``, or a table of ``columns`` (and, on stderr, how
    to get the next page)."""
    if as_json:
        _print_json({"items": list(rows), "next_cursor": next_cursor})
        return
    table = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(line[i]) for line in table)]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for line in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    if next_cursor:
        click.echo(f"(more: add --after {next_cursor})", err=True)


def page(
    rows: Sequence[Any], limit: int, view: Callable[[Any], dict[str, Any]]
) -> tuple[list[dict[str, Any]], str | None]:
    """The views of the first ``limit`` of ``limit + 1`` fetched rows, and the next page's cursor."""
    shown = rows[:limit]
    cursor = str(shown[-1].id) if len(rows) > limit and shown else None
    return [view(row) for row in shown], cursor


def parse_after(after: str | None) -> uuid.UUID | None:
    """The ``--after`` cursor as an id (usage error if it is not one)."""
    if after is None:
        return None
    try:
        return uuid.UUID(after)
    except ValueError:
        raise click.BadParameter(
            f"{after!r} is not an id printed by a previous page", param_hint="--after"
        ) from None
