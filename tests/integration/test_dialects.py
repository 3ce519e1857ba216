"""The portable column types and session settings behave the same on SQLite, PostgreSQL and MariaDB:
microsecond UTC times, double-precision floats, large blobs, long 4-byte text, JSON, code-point string
comparison, exact totals from concurrent batched writers, READ COMMITTED, and errors (not silent
truncation) for values that do not fit.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from portal import audit
from portal.db.models import ApiKey, Budget, CompletionCacheEntry, Model, RequestLog, SpendDaily, Tenant
from portal.keys.service import create_key
from portal.spend.records import CallRecord
from portal.spend.writer import SpendWriter
from portal.tenants.service import create_tenant
from portal.timeutil import utcnow

ACTOR = audit.Actor(type="test", label="dialects")
server_only = pytest.mark.backends("postgresql", "mariadb")


def _marker() -> str:
    return uuid.uuid4().hex[:8]


async def test_times_keep_microseconds_and_come_back_in_utc(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Regression: MariaDB's bare DATETIME dropped the microseconds (and has no time zone)."""
    plus_two = dt.timezone(dt.timedelta(hours=2))
    moment = dt.datetime(2026, 1, 2, 5, 4, 5, 123456, tzinfo=plus_two)
    later = moment + dt.timedelta(microseconds=1)
    marker = _marker()
    async with sessions() as session, session.begin():
        for suffix, created in (("a", moment), ("b", later)):
            session.add(
                CompletionCacheEntry(
                    key=f"{marker}-{suffix}", model="m", response=b"x", created_at=created, expires_at=created
                )
            )
    async with sessions() as session:
        first = await session.get_one(CompletionCacheEntry, f"{marker}-a")
        newer = await session.scalars(
            select(CompletionCacheEntry.key).where(
                CompletionCacheEntry.key.like(f"{marker}-%"), CompletionCacheEntry.created_at > moment
            )
        )
        assert list(newer) == [f"{marker}-b"]
    assert first.created_at == moment
    assert first.created_at.tzinfo == dt.UTC
    assert (first.created_at.hour, first.created_at.microsecond) == (3, 123456)


async def test_floats_are_double_precision(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Regression: MariaDB's FLOAT is 4 bytes: a soft threshold of 0.8 read back as 0.800000011920929."""
    request_id = uuid.uuid4().hex
    async with sessions() as session, session.begin():
        budget = Budget(subject_type="key", subject_id=uuid.uuid4(), amount=Decimal(1), soft_threshold=0.8)
        session.add(budget)
        session.add(RequestLog(request_id=request_id, created_at=utcnow(), status_code=200, latency_ms=0.1))
    async with sessions() as session:
        threshold = await session.scalar(select(Budget.soft_threshold).where(Budget.id == budget.id))
        latency = await session.scalar(
            select(RequestLog.latency_ms).where(RequestLog.request_id == request_id)
        )
    assert (threshold, latency) == (0.8, 0.1)


async def test_large_blobs_and_long_four_byte_text_round_trip(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Regression: MariaDB's BLOB stops at 64 KiB, and two VARCHAR(10000) utf8mb4 columns overflow its
    65,535-byte row (the migration failed); a cached response and logged prompts are bigger."""
    body = bytes(range(256)) * 1200  # 300 KiB
    prompt, answer = "😀" * 10_000, "ж" * 10_000
    key, request_id = f"{_marker()}-blob", uuid.uuid4().hex
    now = utcnow()
    async with sessions() as session, session.begin():
        session.add(CompletionCacheEntry(key=key, model="m", response=body, created_at=now, expires_at=now))
        session.add(
            RequestLog(request_id=request_id, created_at=now, status_code=200, prompt=prompt, response=answer)
        )
    async with sessions() as session:
        stored = await session.scalar(
            select(CompletionCacheEntry.response).where(CompletionCacheEntry.key == key)
        )
        row = (
            await session.execute(
                select(RequestLog.prompt, RequestLog.response).where(RequestLog.request_id == request_id)
            )
        ).one()
    assert stored == body
    assert tuple(row) == (prompt, answer)


async def test_json_round_trips_unicode_and_nesting(sessions: async_sessionmaker[AsyncSession]) -> None:
    document = {"ключ": "值 😀", "numbers": [1, 2.5, None], "nested": {"ok": True, "empty": {}}}
    async with sessions() as session, session.begin():
        tenant = await create_tenant(session, ACTOR, slug=f"json-{_marker()}", metadata=document)
    async with sessions() as session:
        assert (await session.get_one(Tenant, tenant.id)).metadata_ == document


async def test_unique_strings_compare_by_code_point(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Names that differ only in case, an accent or a trailing space are different names, and sort by
    code point, as on PostgreSQL (MariaDB's default collation made them one: a duplicate-key error)."""
    marker = _marker()
    names = [f"{marker}-Mix", f"{marker}-mix", f"{marker}-mïx", f"{marker}-mix ", f"{marker}-MIX"]
    async with sessions() as session, session.begin():
        session.add_all(Model(name=name) for name in names)
    async with sessions() as session:
        exact = await session.scalars(select(Model.name).where(Model.name == f"{marker}-mix"))
        ordered = await session.scalars(
            select(Model.name).where(Model.name.like(f"{marker}-%")).order_by(Model.name)
        )
        found = await session.scalar(select(func.count()).where(Model.name.ilike(f"{marker}-MIX")))
        assert list(exact) == [f"{marker}-mix"]
        assert list(ordered) == sorted(names)
        assert found == 3


async def test_concurrent_writers_keep_totals_exact(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Four instances' batched writers flushing at once into shared and new rollup buckets and the same
    spend totals: no deadlock, no lost increment. (Under MariaDB's default REPEATABLE READ the rollup
    upserts' gap locks sometimes deadlocked; test_transactions_read_committed pins the engine's level.)"""
    async with sessions() as session, session.begin():
        tenant = await create_tenant(session, ACTOR, slug=f"race-{_marker()}")
        keys = [(await create_key(session, ACTOR, tenant_id=tenant.id)).key for _ in range(3)]
    writers = [SpendWriter(sessions, batch_size=100) for _ in range(4)]
    now, cost, per_writer = utcnow(), Decimal("0.000001000001"), 300
    for number, writer in enumerate(writers):
        for call in range(per_writer):
            writer.submit(
                CallRecord(
                    request_id=uuid.uuid4().hex,
                    created_at=now,
                    status_code=200,
                    tenant_id=tenant.id,
                    api_key_id=keys[(call + number) % len(keys)].id,
                    model=f"race-{(call * 7 + number) % 40}",
                    provider="mock",
                    prompt_tokens=3,
                    cost=cost,
                )
            )
    await asyncio.gather(*(writer.flush() for writer in writers))
    total_calls = len(writers) * per_writer
    async with sessions() as session:
        requests, total = (
            await session.execute(
                select(func.sum(SpendDaily.requests), func.sum(SpendDaily.cost)).where(
                    SpendDaily.tenant_id == tenant.id
                )
            )
        ).one()
        spent = await session.scalar(select(Tenant.spend_total).where(Tenant.id == tenant.id))
    assert requests == total_calls
    assert total == spent == cost * total_calls


@server_only
async def test_transactions_read_committed(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A transaction sees what others committed since its first read, as on PostgreSQL (MariaDB's
    default REPEATABLE READ kept showing the first snapshot)."""
    async with engine.connect() as conn:
        assert await conn.get_isolation_level() == "READ COMMITTED"
    async with sessions() as session, session.begin():
        tenant = await create_tenant(session, ACTOR, slug=f"rc-{_marker()}")
    async with sessions() as reader, reader.begin():
        before = await reader.scalar(select(Tenant.spend_total).where(Tenant.id == tenant.id))
        async with sessions() as writer, writer.begin():
            await writer.execute(
                update(Tenant).where(Tenant.id == tenant.id).values(spend_total=Tenant.spend_total + 5)
            )
        after = await reader.scalar(select(Tenant.spend_total).where(Tenant.id == tenant.id))
    assert (before, after) == (Decimal(0), Decimal(5))


@server_only
async def test_a_value_that_does_not_fit_is_an_error(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Strict mode on MariaDB: a too-long string is refused, never silently cut (as on PostgreSQL)."""
    with pytest.raises(DBAPIError):
        async with sessions() as session, session.begin():
            session.add(Tenant(slug="x" * 65, name="too long"))


async def test_last_use_is_stored_in_utc_whatever_the_callers_zone(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Regression: the writer bound a key's last use as an untyped time, which SQLite and MariaDB
    stored in the caller's zone (the offset dropped, not converted): a +02:00 call read 2 hours late."""
    async with sessions() as session, session.begin():
        tenant = await create_tenant(session, ACTOR, slug=f"seen-{_marker()}")
        key = (await create_key(session, ACTOR, tenant_id=tenant.id)).key
    moment = dt.datetime(2026, 3, 4, 12, 30, 0, 654321, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    writer = SpendWriter(sessions)
    writer.submit(
        CallRecord(request_id=uuid.uuid4().hex, created_at=moment, status_code=200, api_key_id=key.id)
    )
    await writer.flush()
    async with sessions() as session:
        seen = await session.scalar(select(ApiKey.last_used_at).where(ApiKey.id == key.id))
    assert seen == moment
