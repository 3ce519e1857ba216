"""The audit writer is transactional: no event without the change, never a change without its event."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal import audit
from portal.db.models import AuditEvent, Tenant
from portal.tenants.service import create_tenant

ACTOR = audit.Actor(type="user", id="u-1", label="alice@example.com", ip="10.0.0.7", request_id="req-1")


class Boom(Exception):
    pass


async def _events_for(sessions: async_sessionmaker[AsyncSession], target_id: str) -> list[AuditEvent]:
    async with sessions() as session:
        return list(
            (
                await session.scalars(
                    select(AuditEvent).where(AuditEvent.target_id == target_id).order_by(AuditEvent.seq)
                )
            ).all()
        )


async def test_committed_change_has_its_event(sessions: async_sessionmaker[AsyncSession]) -> None:
    slug = f"t-{uuid.uuid4().hex[:8]}"
    async with sessions() as session, session.begin():
        tenant = await create_tenant(session, ACTOR, slug=slug, name="Team")
    events = await _events_for(sessions, str(tenant.id))
    assert len(events) == 1
    event = events[0]
    assert event.action == "tenant.created"
    assert (event.actor_type, event.actor_id, event.actor_label) == ("user", "u-1", "alice@example.com")
    assert (event.ip, event.request_id, event.target_type) == ("10.0.0.7", "req-1", "tenant")
    assert event.after is not None
    assert event.after["slug"] == slug
    assert event.before is None
    assert event.created_at.tzinfo is not None


async def test_rolled_back_change_leaves_no_event(sessions: async_sessionmaker[AsyncSession]) -> None:
    slug = f"t-{uuid.uuid4().hex[:8]}"
    created: list[uuid.UUID] = []

    async def change_then_fail() -> None:
        async with sessions() as session, session.begin():
            created.append((await create_tenant(session, ACTOR, slug=slug)).id)
            raise Boom

    with pytest.raises(Boom):
        await change_then_fail()
    [tenant_id] = created
    assert await _events_for(sessions, str(tenant_id)) == []
    async with sessions() as session:
        assert await session.scalar(select(func.count()).where(Tenant.slug == slug)) == 0


async def test_record_with_before_and_after_in_callers_transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    target = str(uuid.uuid4())
    async with sessions() as session, session.begin():
        await audit.record(
            session,
            ACTOR,
            "key.revoked",
            target_type="key",
            target_id=target,
            before={"status": "active"},
            after={"status": "revoked"},
        )
        async with sessions() as other:
            assert await other.scalar(select(func.count()).where(AuditEvent.target_id == target)) == 0
    events = await _events_for(sessions, target)
    assert [(e.before, e.after) for e in events] == [({"status": "active"}, {"status": "revoked"})]
