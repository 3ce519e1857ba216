"""Retention on every backend: old request logs go in batches (archived first when asked), newer rows,
rollups and spend totals stay; a failed archive deletes nothing; pruning audit events keeps the hash
chain verifiable; one instance at a time does the work."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal import audit
from portal.audit import service as audit_service
from portal.audit.chain import event_hash
from portal.audit.verify import PRUNED_ACTION, verify_chain
from portal.config import Settings
from portal.db.models import AuditEvent, RequestLog, SpendDaily, Tenant
from portal.retention.guard import LeaseGuard, RedisGuard
from portal.retention.runner import RetentionRunner
from portal.retention.service import RetentionReport, run_retention
from portal.tenants.service import create_tenant, update_tenant
from portal.timeutil import utcnow
from tests.conftest import REDIS_URL, make_settings, redis_url_for
from tests.integration.conftest import FreshDb

ACTOR = audit.Actor(type="test", label="retention tests")
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def settings_for(fresh: FreshDb, **overrides: Any) -> Settings:
    return make_settings(fresh.url, **{"retention_batch_size": 3, **overrides})


async def add_logs(
    sessions: async_sessionmaker[AsyncSession], *ages_days: float, now: dt.datetime = NOW
) -> list[int]:
    """One request log per age (days before ``now``); returns their ids in that order."""
    rows = [
        RequestLog(
            request_id=f"req-{uuid.uuid4().hex}",
            created_at=now - dt.timedelta(days=age),
            model="gpt-test",
            status_code=200,
            prompt_tokens=i,
            cost=Decimal("0.000000000001") * (i + 1),
            latency_ms=1.5,
            prompt="Grüße",
        )
        for i, age in enumerate(ages_days)
    ]
    async with sessions() as session, session.begin():
        session.add_all(rows)
    return [row.id for row in rows]


async def add_rollup_and_tenant(sessions: async_sessionmaker[AsyncSession]) -> uuid.UUID:
    async with sessions() as session, session.begin():
        tenant = await create_tenant(session, ACTOR, slug=f"r-{uuid.uuid4().hex[:8]}")
        tenant.spend_total = Decimal("12.345678901234")
        session.add(
            SpendDaily(
                bucket=uuid.uuid4().hex,
                day=(NOW - dt.timedelta(days=400)).date(),
                model="gpt-test",
                requests=9,
            )
        )
    return tenant.id


async def log_ids(sessions: async_sessionmaker[AsyncSession]) -> set[int]:
    async with sessions() as session:
        return set((await session.scalars(select(RequestLog.id))).all())


def archived(directory: Path, table: str) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for file in sorted(directory.glob(f"{table}-*.jsonl.gz")):
        with gzip.open(file, "rt", encoding="utf-8") as text:
            lines += [json.loads(line) for line in text]
    return lines


async def run(fresh: FreshDb, settings: Settings, **options: Any) -> RetentionReport:
    return await run_retention(settings, fresh.sessions, None, ACTOR, now=options.pop("now", NOW), **options)


async def test_old_request_logs_go_in_batches_and_the_rest_stays(fresh: FreshDb, tmp_path: Path) -> None:
    old = await add_logs(fresh.sessions, 400, 200, 91, 90.01, 95, 300, 120)
    new = await add_logs(fresh.sessions, 89.9, 10, 0)
    tenant_id = await add_rollup_and_tenant(fresh.sessions)
    report = await run(fresh, settings_for(fresh, retention_archive_dir=str(tmp_path / "archive")))
    assert report.ok
    logs = report.tables[0]
    assert (logs.table, logs.deleted, logs.batches, logs.error) == ("request_logs", 7, 3, None)
    assert logs.cutoff == NOW - dt.timedelta(days=90)
    assert await log_ids(fresh.sessions) == set(new)
    assert len(logs.files) == 3
    lines = archived(tmp_path / "archive", "request_logs")
    assert sorted(line["id"] for line in lines) == sorted(old)
    first = next(line for line in lines if line["id"] == old[0])
    assert first["cost"] == "0.000000000001"
    assert first["prompt"] == "Grüße"
    assert dt.datetime.fromisoformat(first["created_at"]) == NOW - dt.timedelta(days=400)
    async with fresh.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(SpendDaily)) == 1
        assert await session.scalar(select(SpendDaily.requests)) == 9
        tenant = await session.get_one(Tenant, tenant_id)
        assert tenant.spend_total == Decimal("12.345678901234")
    assert report.tables[1].cutoff is None
    again = await run(fresh, settings_for(fresh))
    assert (again.tables[0].deleted, again.tables[0].batches) == (0, 0)


async def test_dry_run_counts_and_deletes_nothing(fresh: FreshDb) -> None:
    ids = await add_logs(fresh.sessions, 100, 100, 1)
    report = await run(fresh, settings_for(fresh, audit_retention_days=1), dry_run=True)
    assert [t.would_delete for t in report.tables] == [2, 0]
    assert await log_ids(fresh.sessions) == set(ids)


async def test_unwritable_archive_deletes_nothing(fresh: FreshDb, tmp_path: Path) -> None:
    ids = await add_logs(fresh.sessions, 100, 100, 100, 100)
    (tmp_path / "out").mkdir()
    blocker = tmp_path / "out" / "a-file"
    blocker.write_text("not a directory")
    report = await run(fresh, settings_for(fresh, retention_archive_dir=str(blocker / "archive")))
    assert not report.ok
    logs = report.tables[0]
    assert logs.deleted == 0
    assert logs.error is not None
    assert "cannot write the archive" in logs.error
    assert await log_ids(fresh.sessions) == set(ids)
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["a-file"]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[dt.datetime]:
    """Audit events are recorded at ``clock[0]`` while the test sets it."""
    now = [NOW]
    monkeypatch.setattr(audit_service, "utcnow", lambda: now[0])
    return now


async def history(
    sessions: async_sessionmaker[AsyncSession], clock: list[dt.datetime], days_ago: int
) -> None:
    """Three audit events (tenant created, renamed, renamed), ``days_ago`` days before NOW."""
    clock[0] = NOW - dt.timedelta(days=days_ago)
    async with sessions() as session, session.begin():
        tenant = await create_tenant(session, ACTOR, slug=f"h-{uuid.uuid4().hex[:8]}")
    for name in ("one", "two"):
        async with sessions() as session, session.begin():
            await update_tenant(session, ACTOR, await session.merge(tenant), {"name": name})


async def chain(sessions: async_sessionmaker[AsyncSession]) -> list[AuditEvent]:
    async with sessions() as session:
        return list((await session.scalars(select(AuditEvent).order_by(AuditEvent.seq))).all())


async def test_audit_pruning_keeps_the_chain_verifiable(
    fresh: FreshDb, clock: list[dt.datetime], tmp_path: Path
) -> None:
    await history(fresh.sessions, clock, 400)
    await history(fresh.sessions, clock, 100)
    await history(fresh.sessions, clock, 5)
    before = await chain(fresh.sessions)
    assert len(before) == 9
    clock[0] = NOW
    settings = settings_for(fresh, audit_retention_days=30, retention_archive_dir=str(tmp_path))
    report = await run(fresh, settings)
    events = report.tables[1]
    assert (events.deleted, events.batches, events.error) == (6, 2, None)
    after = await chain(fresh.sessions)
    assert [e.id for e in after[:3]] == [e.id for e in before[6:]]
    pruned = [e for e in after if e.action == PRUNED_ACTION]
    assert [(p.after or {})["through_seq"] for p in pruned] == [3, 6]
    assert [(p.after or {})["deleted"] for p in pruned] == [3, 3]
    assert (pruned[-1].after or {})["through_hash"] == before[5].hash == after[0].prev_hash
    verified = await verify_chain(fresh.sessions)
    assert verified.ok, verified.broken
    assert (verified.first_seq, verified.anchor, verified.events) == (7, before[5].hash, 5)
    lines = archived(tmp_path, "audit_events")
    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert [line["hash"] for line in lines] == [e.hash for e in before[:6]]

    later = await run(fresh, settings, now=NOW + dt.timedelta(days=365))
    assert later.tables[1].deleted == 5
    remaining = await chain(fresh.sessions)
    assert [e.action for e in remaining] == [PRUNED_ACTION, PRUNED_ACTION]
    verified = await verify_chain(fresh.sessions)
    assert verified.ok, verified.broken


async def test_audit_pruning_refuses_an_edited_event(fresh: FreshDb, clock: list[dt.datetime]) -> None:
    await history(fresh.sessions, clock, 400)
    await history(fresh.sessions, clock, 1)
    victim = (await chain(fresh.sessions))[1]
    async with fresh.engine.begin() as conn:
        await conn.execute(
            update(AuditEvent.__table__).where(AuditEvent.__table__.c.id == victim.id).values(actor_label="x")
        )
    clock[0] = NOW
    report = await run(fresh, settings_for(fresh, audit_retention_days=30))
    events = report.tables[1]
    assert events.deleted == 0
    assert events.error is not None
    assert f"audit event {victim.id} (seq 2) does not match its hash" in events.error
    assert len(await chain(fresh.sessions)) == 6


async def test_a_pruned_chain_with_its_pruned_event_removed_fails_verify(
    fresh: FreshDb, clock: list[dt.datetime]
) -> None:
    await history(fresh.sessions, clock, 400)
    await history(fresh.sessions, clock, 1)
    clock[0] = NOW
    await run(fresh, settings_for(fresh, audit_retention_days=30))
    pruned = next(e for e in await chain(fresh.sessions) if e.action == PRUNED_ACTION)
    assert pruned.hash == event_hash(pruned)
    async with fresh.engine.begin() as conn:
        await conn.execute(
            update(AuditEvent.__table__)
            .where(AuditEvent.__table__.c.id == pruned.id)
            .values(after={**(pruned.after or {}), "through_seq": 2})
        )
    report = await verify_chain(fresh.sessions)
    assert report.broken is not None
    assert report.broken.event_id == pruned.id


async def test_only_one_instance_at_a_time(fresh: FreshDb, backend: str) -> None:
    await add_logs(fresh.sessions, 100)
    redis = Redis.from_url(REDIS_URL) if redis_url_for(backend) else None
    try:
        name = f"t-{uuid.uuid4().hex[:8]}"
        guards = (
            [RedisGuard(redis, name=name) for _ in range(2)]
            if redis is not None
            else [LeaseGuard(fresh.sessions, name=name) for _ in range(2)]
        )
        one, two = guards
        assert await one.acquire()
        assert not await two.acquire()
        assert await one.renew()
        assert not await two.renew()
        busy = await run(fresh, settings_for(fresh), guard=two)
        assert busy.busy
        assert not busy.ok
        assert len(await log_ids(fresh.sessions)) == 1
        await one.release()
        assert await two.acquire()
        await two.release()
        done = await run(fresh, settings_for(fresh), guard=one)
        assert done.tables[0].deleted == 1
    finally:
        if redis is not None:
            await redis.aclose()


async def test_an_expired_lease_is_taken_over(fresh: FreshDb) -> None:
    name = f"t-{uuid.uuid4().hex[:8]}"
    crashed, other = LeaseGuard(fresh.sessions, name=name, ttl_s=0.0), LeaseGuard(fresh.sessions, name=name)
    assert await crashed.acquire()
    assert await other.acquire()
    assert not await crashed.renew()


async def test_background_runner_does_the_work(fresh: FreshDb) -> None:
    await add_logs(fresh.sessions, 1000, now=utcnow())
    kept = await add_logs(fresh.sessions, 0, now=utcnow())
    runner = RetentionRunner(settings_for(fresh), fresh.sessions, None)
    await runner.run_once()
    assert await log_ids(fresh.sessions) == set(kept)
    idle = RetentionRunner(settings_for(fresh, request_log_retention_days=0), fresh.sessions, None)
    assert not idle.enabled
    idle.start()
    await idle.close()


async def test_a_run_stops_when_another_instance_takes_the_lease_over(fresh: FreshDb) -> None:
    await add_logs(fresh.sessions, 100, 100, 100, 100, 100)
    name = f"t-{uuid.uuid4().hex[:8]}"
    other = LeaseGuard(fresh.sessions, name=name)

    class Stalled(LeaseGuard):
        """A holder whose lease expires (ttl 0) and is taken by ``other`` before it renews."""

        async def renew(self) -> bool:
            assert await other.acquire()
            return await super().renew()

    report = await run(fresh, settings_for(fresh), guard=Stalled(fresh.sessions, name=name, ttl_s=0.0))
    logs = report.tables[0]
    assert (logs.deleted, logs.batches) == (3, 1)
    assert logs.error is not None
    assert "lost" in logs.error
    assert len(await log_ids(fresh.sessions)) == 2


async def test_pruning_while_changes_are_made_keeps_one_chain(
    fresh: FreshDb, clock: list[dt.datetime]
) -> None:
    """Audit pruning (one event per batch) races 12 changes and verifications; the chain stays whole."""
    for _ in range(2):
        await history(fresh.sessions, clock, 400)
    clock[0] = NOW
    async with fresh.sessions() as session, session.begin():
        tenant = await create_tenant(session, ACTOR, slug=f"busy-{uuid.uuid4().hex[:8]}")

    async def change(i: int) -> None:
        async with fresh.sessions() as session, session.begin():
            await update_tenant(session, ACTOR, await session.merge(tenant), {"description": f"change {i}"})

    async def verify() -> bool:
        return (await verify_chain(fresh.sessions)).ok

    settings = settings_for(fresh, audit_retention_days=30, retention_batch_size=1)
    results = await asyncio.gather(
        run(fresh, settings), *(change(i) for i in range(12)), *(verify() for _ in range(3))
    )
    report = results[0]
    assert isinstance(report, RetentionReport)
    assert report.tables[1].deleted == 6
    assert results[-3:] == [True, True, True]
    verified = await verify_chain(fresh.sessions)
    assert verified.ok, verified.broken
    assert verified.events == 1 + 12 + 6  # tenant created, the changes, one audit.pruned per batch
