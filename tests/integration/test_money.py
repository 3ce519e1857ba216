"""Money is exact on every backend: many tiny costs add up to exactly their decimal sum."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.db.models import RequestLog
from portal.timeutil import utcnow


async def test_sum_of_tiny_costs_is_exact(sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = uuid.uuid4()
    cost = Decimal("0.000000150001")
    async with sessions() as session, session.begin():
        session.add_all(
            RequestLog(
                request_id=uuid.uuid4().hex, created_at=utcnow(), tenant_id=tenant, status_code=200, cost=cost
            )
            for _ in range(1000)
        )
    async with sessions() as session:
        total = await session.scalar(select(func.sum(RequestLog.cost)).where(RequestLog.tenant_id == tenant))
        one = await session.scalar(select(RequestLog.cost).where(RequestLog.tenant_id == tenant).limit(1))
    assert one == cost
    assert total == Decimal("0.000150001000")
    assert isinstance(total, Decimal)
