"""Period resets in the database: exactly once across concurrent resetters, lifetime spend untouched,
across a month boundary and for a ``30d`` duration (injected clock)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal import audit
from portal.db.models import AuditEvent, Budget, SubjectType, Tenant
from portal.limits.budgets import reset_budget, reset_due_budgets, set_budget
from portal.tenants.service import create_tenant

UTC = dt.UTC
ACTOR = audit.Actor(type="test", label="reset tests")
Sessions = async_sessionmaker[AsyncSession]


async def _tenant_with_budget(
    sessions: Sessions, period: str, now: dt.datetime
) -> tuple[uuid.UUID, uuid.UUID]:
    async with sessions() as session, session.begin():
        tenant = await create_tenant(session, ACTOR, slug=f"r-{uuid.uuid4().hex[:10]}")
        budget = await set_budget(
            session,
            ACTOR,
            subject_type=SubjectType.TENANT,
            subject_id=tenant.id,
            amount=Decimal(50),
            period=period,
            now=now,
        )
        budget.used = Decimal("42.5")
        tenant.spend_total = Decimal("1042.5")
    return tenant.id, budget.id


async def _reset_concurrently(sessions: Sessions, now: dt.datetime) -> list[uuid.UUID]:
    async def one() -> list[uuid.UUID]:
        async with sessions() as session, session.begin():
            return await reset_due_budgets(session, now)

    results = await asyncio.gather(*(one() for _ in range(4)), return_exceptions=True)
    done: list[uuid.UUID] = []
    for result in results:
        if isinstance(result, list):
            done += result
    # A resetter that lost a lock race (SQLite: "database is locked" under load) retries next round,
    # as the gateway's loop does: one more round must not reset anything a second time.
    done += await one()
    return done


async def test_monthly_budget_resets_once_at_the_month_boundary(
    sessions: Sessions,
) -> None:
    created = dt.datetime(2026, 1, 20, 9, tzinfo=UTC)
    tenant_id, budget_id = await _tenant_with_budget(sessions, "monthly", created)
    async with sessions() as session:
        budget = await session.get(Budget, budget_id)
        assert budget is not None
        assert budget.reset_at == dt.datetime(2026, 2, 1, tzinfo=UTC)
    assert budget_id not in await _reset_concurrently(sessions, dt.datetime(2026, 1, 31, 23, 59, tzinfo=UTC))
    done = await _reset_concurrently(sessions, dt.datetime(2026, 2, 1, 0, 0, 1, tzinfo=UTC))
    assert done.count(budget_id) == 1, "reset exactly once however many instances try"
    async with sessions() as session:
        budget = await session.get(Budget, budget_id)
        tenant = await session.get(Tenant, tenant_id)
        events = await session.scalar(
            select(func.count()).where(
                AuditEvent.action == "budget.period_reset", AuditEvent.target_id == str(budget_id)
            )
        )
    assert budget is not None
    assert tenant is not None
    assert budget.used == 0
    assert budget.period_started_at == dt.datetime(2026, 2, 1, tzinfo=UTC)
    assert budget.reset_at == dt.datetime(2026, 3, 1, tzinfo=UTC)
    assert tenant.spend_total == Decimal("1042.5"), "a reset never wipes lifetime spend"
    assert events == 1


async def test_30d_budget_resets_thirty_days_after_its_start(
    sessions: Sessions,
) -> None:
    created = dt.datetime(2026, 3, 5, 15, 30, tzinfo=UTC)
    _, budget_id = await _tenant_with_budget(sessions, "30d", created)
    assert budget_id not in await _reset_concurrently(sessions, created + dt.timedelta(days=29, hours=23))
    assert (await _reset_concurrently(sessions, created + dt.timedelta(days=30, seconds=1))).count(
        budget_id
    ) == 1
    async with sessions() as session:
        budget = await session.get(Budget, budget_id)
    assert budget is not None
    assert budget.period_started_at == created + dt.timedelta(days=30)
    assert budget.reset_at == created + dt.timedelta(days=60)
    assert budget.used == 0


async def test_a_late_resetter_skips_periods_it_missed(sessions: Sessions) -> None:
    created = dt.datetime(2026, 1, 20, tzinfo=UTC)
    _, budget_id = await _tenant_with_budget(sessions, "monthly", created)
    async with sessions() as session, session.begin():
        await session.execute(update(Budget).where(Budget.id == budget_id).values(used=Decimal(7)))
    done = await _reset_concurrently(sessions, dt.datetime(2026, 4, 10, tzinfo=UTC))
    assert done.count(budget_id) == 1
    async with sessions() as session:
        budget = await session.get(Budget, budget_id)
    assert budget is not None
    assert (budget.period_started_at, budget.reset_at) == (
        dt.datetime(2026, 4, 1, tzinfo=UTC),
        dt.datetime(2026, 5, 1, tzinfo=UTC),
    )


async def test_explicit_reset_starts_the_period_afresh_and_is_audited(sessions: Sessions) -> None:
    created = dt.datetime(2026, 6, 3, tzinfo=UTC)
    tenant_id, budget_id = await _tenant_with_budget(sessions, "30d", created)
    later = created + dt.timedelta(days=10)
    async with sessions() as session, session.begin():
        budget = await reset_budget(session, ACTOR, budget_id, now=later)
    assert budget.used == 0
    assert (budget.period_started_at, budget.reset_at) == (later, later + dt.timedelta(days=30))
    async with sessions() as session:
        tenant = await session.get(Tenant, tenant_id)
        query = select(AuditEvent).where(AuditEvent.action == "budget.reset")
        event = await session.scalar(query.where(AuditEvent.target_id == str(budget_id)))
    assert tenant is not None
    assert tenant.spend_total == Decimal("1042.5")
    assert event is not None
    assert event.before is not None
    assert event.before["used"] == "42.500000000000"


async def test_usage_written_after_an_explicit_reset_by_calls_made_before_it_does_not_count(
    sessions: Sessions,
) -> None:
    """Regression: the batched writer flushed a call made before an explicit reset only after it, and
    its usage landed in the fresh period (a monthly quota stayed exhausted right after its reset)."""
    from portal.limits.usage import persist_budget_usage
    from portal.spend.records import CallRecord

    now = dt.datetime.now(UTC)
    tenant_id, budget_id = await _tenant_with_budget(sessions, "monthly", now - dt.timedelta(minutes=5))
    before_reset = CallRecord(
        request_id=uuid.uuid4().hex,
        created_at=now - dt.timedelta(seconds=2),
        status_code=200,
        tenant_id=tenant_id,
        cost=Decimal("3"),
        budgeted=True,
    )
    async with sessions() as session, session.begin():
        await reset_budget(session, ACTOR, budget_id, now=now)
    async with sessions() as session, session.begin():
        await persist_budget_usage(session, [before_reset])
    after_reset = CallRecord(
        request_id=uuid.uuid4().hex,
        created_at=now + dt.timedelta(seconds=1),
        status_code=200,
        tenant_id=tenant_id,
        cost=Decimal("2"),
        budgeted=True,
    )
    async with sessions() as session, session.begin():
        await persist_budget_usage(session, [after_reset])
    async with sessions() as session:
        budget = await session.get(Budget, budget_id)
    assert budget is not None
    assert budget.used == Decimal(2)
    assert budget.reset_at is not None
    assert budget.reset_at.day == 1


async def test_a_reset_clears_usage_the_writer_added_after_the_row_was_read(sessions: Sessions) -> None:
    """Regression: the reset read ``used`` = 0, the spend writer then committed usage, and the
    reset's UPDATE left ``used`` out (unchanged in the ORM's eyes), so the usage survived it."""
    now = dt.datetime.now(UTC)
    _, budget_id = await _tenant_with_budget(sessions, "monthly", now - dt.timedelta(minutes=5))
    async with sessions() as setup, setup.begin():
        await setup.execute(update(Budget).where(Budget.id == budget_id).values(used=Decimal(0)))
    async with sessions() as session:
        loaded = await session.get(Budget, budget_id)
        assert loaded is not None
        assert loaded.used == 0
        async with sessions() as writer, writer.begin():
            await writer.execute(update(Budget).where(Budget.id == budget_id).values(used=Decimal(65)))
        await reset_budget(session, ACTOR, budget_id, now=now)
        await session.commit()
    async with sessions() as session:
        budget = await session.get(Budget, budget_id)
    assert budget is not None
    assert budget.used == 0
