"""Regression: deleting a tenant, user or key while the spend writer updates the same rows must not
deadlock. The writer locks keys, then tenants, then users, then budgets; deletions lock in that order
too (``portal.db.locking``). Before the fix, deleting a tenant locked the tenant row first and then
its keys (the cascade), so a concurrent writer holding a key lock and wanting the tenant deadlocked.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal import audit
from portal.db.models import ApiKey, Budget, SubjectType, Tenant, User
from portal.keys.service import create_key, delete_key
from portal.limits.budgets import set_budget
from portal.tenants.service import create_tenant, delete_tenant
from portal.users.service import create_user, delete_user

ACTOR = audit.Actor(type="test", label="lock order")


async def _race(
    sessions: async_sessionmaker[AsyncSession],
    key_id: uuid.UUID,
    second: tuple[type[Tenant] | type[User] | type[Budget], uuid.UUID],
    deleting: Callable[[AsyncSession], Awaitable[None]],
) -> None:
    """A writer-like transaction locks the key, a deletion starts, then the writer locks ``second``."""
    async with sessions() as writer, writer.begin():
        await writer.execute(
            update(ApiKey).where(ApiKey.id == key_id).values(spend_total=ApiKey.spend_total + Decimal(1))
        )

        async def delete_it() -> None:
            async with sessions() as session, session.begin():
                await deleting(session)

        deletion = asyncio.create_task(delete_it())
        await asyncio.sleep(0.3)  # let the deletion take whatever locks it takes first
        table, row_id = second
        values = {"used": table.used + 1} if table is Budget else {"spend_total": table.spend_total + 1}
        await writer.execute(update(table).where(table.id == row_id).values(**values))  # type: ignore[attr-defined]
    await asyncio.wait_for(deletion, timeout=30)


async def test_tenant_delete_during_a_spend_write(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        tenant = await create_tenant(session, ACTOR, slug=f"lock-{uuid.uuid4().hex[:8]}")
        key = (await create_key(session, ACTOR, tenant_id=tenant.id)).key

    async def deleting(session: AsyncSession) -> None:
        await delete_tenant(session, ACTOR, await session.get_one(Tenant, tenant.id))

    await _race(sessions, key.id, (Tenant, tenant.id), deleting)
    async with sessions() as session:
        assert await session.get(Tenant, tenant.id) is None
        assert await session.scalar(select(ApiKey.id).where(ApiKey.id == key.id)) is None


async def test_user_delete_during_a_spend_write(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        user = await create_user(session, ACTOR, email=f"lock-{uuid.uuid4().hex[:8]}@example.com")
        key = (await create_key(session, ACTOR, user_id=user.id)).key

    async def deleting(session: AsyncSession) -> None:
        await delete_user(session, ACTOR, await session.get_one(User, user.id))

    await _race(sessions, key.id, (User, user.id), deleting)
    async with sessions() as session:
        assert await session.get(User, user.id) is None


async def test_key_delete_during_a_budget_write(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        key = (await create_key(session, ACTOR)).key
        budget = await set_budget(
            session, ACTOR, subject_type=SubjectType.KEY, subject_id=key.id, amount=Decimal(5)
        )

    async def deleting(session: AsyncSession) -> None:
        await delete_key(session, ACTOR, await session.get_one(ApiKey, key.id))

    await _race(sessions, key.id, (Budget, budget.id), deleting)
    async with sessions() as session:
        assert await session.get(ApiKey, key.id) is None
        assert await session.get(Budget, budget.id) is None
