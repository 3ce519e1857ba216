"""Grant rules: storing glob grants for tenants, users and keys (audited)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from portal import audit
from portal.audit.service import snapshot
from portal.db.models import Grant, SubjectType
from portal.errors import ValidationFailedError

__all__ = ["add_grant"]


async def add_grant(
    session: AsyncSession,
    actor: audit.Actor,
    *,
    subject_type: SubjectType,
    subject_id: uuid.UUID,
    model_pattern: str = "*",
    provider_pattern: str = "*",
    tenant_id: uuid.UUID | None = None,
) -> Grant:
    """Allow ``subject`` the models matching ``model_pattern`` on providers matching ``provider_pattern``.

    Idempotent: an identical grant is returned as is.
    """
    if not model_pattern.strip() or not provider_pattern.strip():
        raise ValidationFailedError("empty pattern", {"model_pattern": "use * for every model"})
    existing = await session.scalar(
        select(Grant).where(
            Grant.subject_type == subject_type,
            Grant.subject_id == subject_id,
            Grant.model_pattern == model_pattern,
            Grant.provider_pattern == provider_pattern,
        )
    )
    if existing is not None:
        return existing
    grant = Grant(
        subject_type=subject_type,
        subject_id=subject_id,
        model_pattern=model_pattern,
        provider_pattern=provider_pattern,
    )
    session.add(grant)
    await session.flush()
    await audit.record(
        session,
        actor,
        "grant.created",
        target_type="grant",
        target_id=grant.id,
        tenant_id=tenant_id,
        after=snapshot(grant),
    )
    return grant
