"""Row-lock order for changes that race with the spend writer.

The writer's transaction updates ``api_keys``, then ``tenants``, then ``users`` (each in id order),
then ``budgets``. A transaction that deletes several of these rows must lock them in the same order,
or PostgreSQL (or InnoDB on MariaDB, whose cascades lock the child rows too) finds a deadlock and
aborts one side; so deletions remove the keys first, in id order, then the tenant or user, and grants
and budgets last. (SQLite locks the whole database: no issue.)
"""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from portal.db.models import ApiKey

__all__ = ["delete_keys_first"]


async def delete_keys_first(
    session: AsyncSession, condition: ColumnElement[bool]
) -> list[tuple[uuid.UUID, str]]:
    """Lock (in id order) and delete the keys matching ``condition``; returns their (id, hash) pairs."""
    rows = (
        await session.execute(
            select(ApiKey.id, ApiKey.key_hash).where(condition).order_by(ApiKey.id).with_for_update()
        )
    ).all()
    if rows:
        await session.execute(
            delete(ApiKey)
            .where(ApiKey.id.in_([key_id for key_id, _ in rows]))
            .execution_options(synchronize_session="fetch")
        )
    return [(key_id, key_hash) for key_id, key_hash in rows]
