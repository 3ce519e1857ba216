"""The audit hash chain: every committed event is sealed into one chain (also under concurrency, across
app instances), and ``verify_chain`` names the first event where rows were edited or removed."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import uuid
from pathlib import Path

import pytest
from sqlalchemy import column, delete, select, table, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal import audit
from portal.audit.chain import GENESIS, event_hash
from portal.audit.verify import _head, _snapshot, _walk, verify_chain
from portal.db.engine import create_engine, create_session_factory
from portal.db.migrate import upgrade_async
from portal.db.models import AdminRole, AuditChainHead, AuditEvent
from portal.db.types import DateTimeUTC, JsonB
from portal.keys.service import create_key, get_key, revoke_key, update_key
from portal.tenants.service import create_tenant, delete_tenant, update_tenant
from tests.api.conftest import running_admin_api
from tests.conftest import dispose_database, make_settings, new_database
from tests.integration.conftest import FreshDb

ACTOR = audit.Actor(type="test", label="chain tests", ip="10.1.2.3", request_id="req-chain")


async def mixed_changes(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Tenants and keys created, changed, revoked and deleted; one change rolled back."""
    async with sessions() as session, session.begin():
        tenant = await create_tenant(session, ACTOR, slug=f"t-{uuid.uuid4().hex[:8]}", name="Zürich ✓")
        new = await create_key(session, ACTOR, tenant_id=tenant.id, alias="k1", metadata={"n": 1.5})
    async with sessions() as session, session.begin():
        key = await get_key(session, new.key.id)
        await update_key(session, ACTOR, key, {"alias": "renamed", "metadata": {"nested": {"b": [1, 2]}}})
        await update_tenant(session, ACTOR, tenant, {"description": "several events in one transaction"})

    async def rolled_back() -> None:
        async with sessions() as session, session.begin():
            await create_tenant(session, ACTOR, slug=f"gone-{uuid.uuid4().hex[:8]}")
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await rolled_back()
    async with sessions() as session, session.begin():
        await revoke_key(session, ACTOR, await get_key(session, new.key.id))
        await create_key(session, ACTOR, role=AdminRole.AUDITOR, alias="auditor")
    async with sessions() as session, session.begin():
        await delete_tenant(session, ACTOR, tenant)


async def chain(sessions: async_sessionmaker[AsyncSession]) -> list[AuditEvent]:
    async with sessions() as session:
        return list((await session.scalars(select(AuditEvent).order_by(AuditEvent.seq))).all())


async def test_intact_chain_after_a_mix_of_changes(fresh: FreshDb) -> None:
    await mixed_changes(fresh.sessions)
    events = await chain(fresh.sessions)
    assert len(events) >= 7
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert events[0].prev_hash == GENESIS
    for previous, event in itertools.pairwise(events):
        assert event.prev_hash == previous.hash
    assert all(e.hash == event_hash(e) for e in events)
    assert not any(e.action == "tenant.created" and e.target_id and "gone-" in str(e.after) for e in events)
    report = await verify_chain(fresh.sessions)
    assert report.ok, report.broken
    assert (report.events, report.first_seq, report.last_seq) == (len(events), 1, len(events))
    assert (report.head_seq, report.head_hash) == (events[-1].seq, events[-1].hash)


async def test_edited_event_is_named(fresh: FreshDb) -> None:
    await mixed_changes(fresh.sessions)
    victim = (await chain(fresh.sessions))[3]
    async with fresh.engine.begin() as conn:
        await conn.execute(
            update(AuditEvent.__table__)
            .where(AuditEvent.__table__.c.id == victim.id)
            .values(after={"alias": "nothing to see"})
        )
    report = await verify_chain(fresh.sessions)
    assert not report.ok
    assert report.broken is not None
    assert (report.broken.event_id, report.broken.seq) == (victim.id, victim.seq)
    assert "does not match its hash" in report.broken.problem
    assert report.events == victim.seq - 1


async def test_edited_event_by_raw_sql_is_named(fresh: FreshDb) -> None:
    await mixed_changes(fresh.sessions)
    victim = (await chain(fresh.sessions))[1]
    async with fresh.engine.begin() as conn:
        await conn.execute(
            text("UPDATE audit_events SET actor_label = 'someone else' WHERE id = :id"), {"id": victim.id}
        )
    report = await verify_chain(fresh.sessions)
    assert report.broken is not None
    assert (report.broken.event_id, report.broken.seq) == (victim.id, victim.seq)


async def test_event_deleted_from_the_middle_is_found(fresh: FreshDb) -> None:
    await mixed_changes(fresh.sessions)
    events = await chain(fresh.sessions)
    async with fresh.engine.begin() as conn:
        await conn.execute(delete(AuditEvent.__table__).where(AuditEvent.__table__.c.id == events[2].id))
    report = await verify_chain(fresh.sessions)
    assert report.broken is not None
    assert (report.broken.event_id, report.broken.seq) == (events[3].id, events[3].seq)
    assert "seq 4 follows seq 2: 1 event(s) before it are missing" in report.broken.problem


async def test_rehashed_edit_still_breaks_the_next_link(fresh: FreshDb) -> None:
    """Recomputing the edited event's own hash does not help: the next event names the old hash."""
    await mixed_changes(fresh.sessions)
    events = await chain(fresh.sessions)
    async with fresh.sessions() as session, session.begin():
        victim = await session.get_one(AuditEvent, events[2].id)
        victim.actor_label = "forged"
        victim.hash = event_hash(victim)
    report = await verify_chain(fresh.sessions)
    assert report.broken is not None
    assert (report.broken.event_id, report.broken.seq) == (events[3].id, events[3].seq)
    assert "is not the previous event's hash" in report.broken.problem


async def test_removed_newest_and_oldest_events_are_found(fresh: FreshDb) -> None:
    await mixed_changes(fresh.sessions)
    events = await chain(fresh.sessions)
    async with fresh.engine.begin() as conn:
        await conn.execute(delete(AuditEvent.__table__).where(AuditEvent.__table__.c.id == events[-1].id))
    report = await verify_chain(fresh.sessions)
    assert report.broken is not None
    assert report.broken.seq == events[-2].seq
    assert "events were removed from the end" in report.broken.problem
    async with fresh.engine.begin() as conn:
        await conn.execute(update(AuditChainHead.__table__).values(seq=events[-2].seq, hash=events[-2].hash))
        await conn.execute(delete(AuditEvent.__table__).where(AuditEvent.__table__.c.id == events[0].id))
    report = await verify_chain(fresh.sessions)
    assert report.broken is not None
    assert (report.broken.event_id, report.broken.seq) == (events[1].id, 2)
    assert "older events were removed" in report.broken.problem


async def test_event_written_outside_the_chain_is_found(fresh: FreshDb) -> None:
    await mixed_changes(fresh.sessions)
    events = await chain(fresh.sessions)
    async with fresh.engine.begin() as conn:
        result = await conn.execute(
            AuditEvent.__table__.insert().values(
                created_at=events[0].created_at,
                actor_type="user",
                actor_label="x",
                action="key.created",
                target_type="key",
            )
        )
        inserted = result.inserted_primary_key[0]
    report = await verify_chain(fresh.sessions)
    assert report.broken is not None
    assert (report.broken.event_id, report.broken.seq) == (inserted, None)


async def test_a_change_committed_during_the_walk_does_not_break_it(fresh: FreshDb) -> None:
    """Regression: the walk read the head and the events in separate snapshots, so a change committed
    in between made an intact chain look cut ("events were removed from the end")."""
    await mixed_changes(fresh.sessions)
    async with fresh.sessions() as session, session.begin():
        tenant = await create_tenant(session, ACTOR, slug=f"t-{uuid.uuid4().hex[:8]}")
    async with fresh.sessions() as reader, reader.begin():
        await _snapshot(reader)
        head = await _head(reader)
        async with fresh.sessions() as writer, writer.begin():
            await update_tenant(writer, ACTOR, await writer.merge(tenant), {"description": "meanwhile"})
        report = await _walk(reader, head)
    assert report.ok, report.broken
    assert (await verify_chain(fresh.sessions)).events == report.events + 1


async def test_empty_chain_is_intact(fresh: FreshDb) -> None:
    report = await verify_chain(fresh.sessions)
    assert report.ok
    assert (report.events, report.head_seq, report.head_hash) == (0, 0, GENESIS)


async def test_concurrent_changes_on_two_instances_form_one_chain(fresh: FreshDb, backend: str) -> None:
    """20 admin API changes at once, spread over two app instances (each its own engine and pool)."""
    settings = make_settings(fresh.url, master_key="sk-test-master-key-0123456789")
    async with (
        running_admin_api(settings, fresh.sessions, "one") as one,
        running_admin_api(settings, fresh.sessions, "two") as two,
    ):
        clients = [one.client("admin"), two.client("admin")]
        try:

            async def change(i: int) -> int:
                client = clients[i % 2]
                if i % 3 == 0:
                    response = await client.post("/api/tenants", json={"slug": f"c-{uuid.uuid4().hex[:8]}"})
                elif i % 3 == 1:
                    response = await client.post("/api/keys", json={"alias": f"concurrent {i}"})
                else:
                    tenant = one.tenant_slug if i % 2 else two.tenant_slug
                    response = await client.patch(f"/api/tenants/{tenant}", json={"description": f"d{i}"})
                return response.status_code

            codes = await asyncio.gather(*(change(i) for i in range(20)))
        finally:
            for client in clients:
                await client.aclose()
    assert all(code in {200, 201} for code in codes), codes
    events = await chain(fresh.sessions)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    report = await verify_chain(fresh.sessions)
    assert report.ok, report.broken
    assert report.events == len(events) >= 20 + 2 * (1 + len(AdminRole))


async def test_migration_chains_events_recorded_before_it(backend: str, tmp_path: Path) -> None:
    url = await new_database(backend, tmp_path)
    try:
        await upgrade_async(url, "0001")
        engine = create_engine(make_settings(url))
        try:
            old_events = table(
                "audit_events",
                column("created_at", DateTimeUTC(timezone=True)),
                column("actor_type"),
                column("actor_label"),
                column("action"),
                column("target_type"),
                column("after", JsonB),
            )
            async with engine.begin() as conn:
                for i in range(3):
                    await conn.execute(
                        old_events.insert().values(
                            created_at=dt.datetime(2026, 1, i + 1, 10, 0, 0, 123456, tzinfo=dt.UTC),
                            actor_type="cli",
                            actor_label="old",
                            action=f"tenant.old{i}",
                            target_type="tenant",
                            after={"name": "Zürich", "ratio": 0.1 * i, "n": i},
                        )
                    )
            await upgrade_async(url)
            sessions = create_session_factory(engine)
            async with sessions() as session, session.begin():
                await create_tenant(session, ACTOR, slug=f"after-{uuid.uuid4().hex[:8]}")
            events = await chain(sessions)
            assert [e.seq for e in events] == [1, 2, 3, 4]
            assert [e.action for e in events][:3] == ["tenant.old0", "tenant.old1", "tenant.old2"]
            report = await verify_chain(sessions)
            assert report.ok, report.broken
        finally:
            await engine.dispose()
    finally:
        await dispose_database(url)
