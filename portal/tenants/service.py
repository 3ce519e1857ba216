"""Tenant rules: slugs are unique and URL-safe; every change is audited in the same transaction."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from portal import audit
from portal.audit.service import snapshot
from portal.db.models import Tenant
from portal.errors import ConflictError, NotFoundError, ValidationFailedError

__all__ = ["create_tenant", "get_tenant_by_slug"]

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


async def get_tenant_by_slug(session: AsyncSession, slug: str) -> Tenant:
    """The tenant with ``slug``, or :class:`NotFoundError`."""
    tenant = await session.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is None:
        raise NotFoundError(f"tenant {slug!r} does not exist")
    return tenant


async def create_tenant(
    session: AsyncSession, actor: audit.Actor, *, slug: str, name: str | None = None, description: str = ""
) -> Tenant:
    """Create a tenant; ``tenant.created`` is audited."""
    if not _SLUG.match(slug):
        raise ValidationFailedError(
            "invalid tenant slug", {"slug": "use 1-64 lowercase letters, digits and dashes, not at the ends"}
        )
    if await session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
        raise ConflictError(f"tenant {slug!r} already exists")
    tenant = Tenant(slug=slug, name=name or slug, description=description)
    session.add(tenant)
    await session.flush()
    await audit.record(
        session,
        actor,
        "tenant.created",
        target_type="tenant",
        target_id=tenant.id,
        tenant_id=tenant.id,
        after=snapshot(tenant),
    )
    return tenant
