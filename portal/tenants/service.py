"""Tenant rules: slugs are unique and URL-safe; every change is audited in the same transaction.

Deleting a tenant deletes its keys, memberships, per-tenant deployments (database cascades) and its
grants and budgets; its request logs and spend rollups stay for reporting.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from portal import audit
from portal.audit.service import snapshot
from portal.db.effects import note
from portal.db.locking import delete_keys_first
from portal.db.models import ApiKey, Budget, Grant, SubjectType, Tenant, TenantStatus
from portal.errors import ConflictError, NotFoundError, ValidationFailedError

__all__ = [
    "TENANT_FIELDS",
    "create_tenant",
    "delete_tenant",
    "get_tenant",
    "get_tenant_by_slug",
    "list_tenants",
    "update_tenant",
]

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
TENANT_FIELDS = frozenset(
    {
        "slug",
        "name",
        "description",
        "status",
        "cache_enabled",
        "log_prompts",
        "metadata",
        "rpm_limit",
        "tpm_limit",
        "max_parallel",
    }
)


def _check_slug(slug: str) -> None:
    if not _SLUG.match(slug):
        raise ValidationFailedError(
            "invalid tenant slug", {"slug": "use 1-64 lowercase letters, digits and dashes, not at the ends"}
        )


async def get_tenant_by_slug(session: AsyncSession, slug: str) -> Tenant:
    """The tenant with ``slug``, or :class:`NotFoundError`."""
    tenant = await session.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is None:
        raise NotFoundError(f"tenant {slug!r} does not exist")
    return tenant


async def get_tenant(session: AsyncSession, ref: str | uuid.UUID) -> Tenant:
    """The tenant with id or slug ``ref``, or :class:`NotFoundError`."""
    if isinstance(ref, uuid.UUID):
        tenant = await session.get(Tenant, ref)
    else:
        try:
            tenant = await session.get(Tenant, uuid.UUID(ref))
        except ValueError:
            tenant = None
        if tenant is None:
            tenant = await session.scalar(select(Tenant).where(Tenant.slug == ref))
    if tenant is None:
        raise NotFoundError(f"tenant {ref!s} does not exist")
    return tenant


async def list_tenants(
    session: AsyncSession,
    *,
    only: uuid.UUID | None = None,
    status: str | None = None,
    search: str | None = None,
    after: uuid.UUID | None = None,
    limit: int = 100,
) -> Sequence[Tenant]:
    """Tenants by id (creation order), up to ``limit + 1`` rows after the cursor ``after``."""
    query = select(Tenant).order_by(Tenant.id).limit(limit + 1)
    if only is not None:
        query = query.where(Tenant.id == only)
    if status:
        query = query.where(Tenant.status == status)
    if search:
        pattern = f"%{search.lower()}%"
        query = query.where(or_(Tenant.slug.like(pattern), Tenant.name.ilike(pattern)))
    if after is not None:
        query = query.where(Tenant.id > after)
    return (await session.scalars(query)).all()


async def create_tenant(
    session: AsyncSession,
    actor: audit.Actor,
    *,
    slug: str,
    name: str | None = None,
    description: str = "",
    **fields: Any,
) -> Tenant:
    """Create a tenant; ``tenant.created`` is audited. ``fields``: any of :data:`TENANT_FIELDS`."""
    _check_slug(slug)
    if await session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
        raise ConflictError(f"tenant {slug!r} already exists")
    tenant = Tenant(slug=slug, name=name or slug, description=description)
    _apply(tenant, fields)
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


def _apply(tenant: Tenant, changes: dict[str, Any]) -> None:
    unknown = set(changes) - TENANT_FIELDS
    if unknown:
        raise ValidationFailedError("unknown fields", dict.fromkeys(sorted(unknown), "not a tenant field"))
    if "status" in changes and changes["status"] not in {s.value for s in TenantStatus}:
        raise ValidationFailedError("invalid status", {"status": "active or suspended"})
    for name, value in changes.items():
        setattr(tenant, "metadata_" if name == "metadata" else name, value)


async def update_tenant(
    session: AsyncSession, actor: audit.Actor, tenant: Tenant, changes: dict[str, Any]
) -> Tenant:
    """Change fields of ``tenant`` (``tenant.updated`` audited with before and after)."""
    if not changes:
        return tenant
    if "slug" in changes and changes["slug"] != tenant.slug:
        _check_slug(changes["slug"])
        taken = await session.scalar(select(Tenant.id).where(Tenant.slug == changes["slug"]))
        if taken is not None:
            raise ConflictError(f"tenant {changes['slug']!r} already exists")
    if changes.get("name") == "":
        raise ValidationFailedError("empty name", {"name": "must not be empty"})
    before = snapshot(tenant)
    _apply(tenant, changes)
    await session.flush()
    action = "tenant.updated"
    if "status" in changes and changes["status"] != before["status"]:
        action = "tenant.suspended" if changes["status"] == TenantStatus.SUSPENDED else "tenant.resumed"
    await audit.record(
        session,
        actor,
        action,
        target_type="tenant",
        target_id=tenant.id,
        tenant_id=tenant.id,
        before=before,
        after=snapshot(tenant),
    )
    note(session, everything=True)
    return tenant


async def delete_tenant(session: AsyncSession, actor: audit.Actor, tenant: Tenant) -> None:
    """Delete ``tenant`` with its keys, members, grants and budgets (``tenant.deleted`` audited)."""
    before = snapshot(tenant)
    # Keys first, then the tenant, then grants and budgets: the spend writer's lock order.
    keys = await delete_keys_first(session, ApiKey.tenant_id == tenant.id)
    key_ids = [key_id for key_id, _ in keys]
    await session.delete(tenant)
    await session.flush()
    for model in (Grant, Budget):
        await session.execute(
            delete(model).where(
                or_(
                    (model.subject_type == SubjectType.TENANT) & (model.subject_id == tenant.id),
                    (model.subject_type == SubjectType.KEY) & model.subject_id.in_(key_ids),
                )
            )
        )
    await audit.record(
        session,
        actor,
        "tenant.deleted",
        target_type="tenant",
        target_id=before["id"],
        tenant_id=tenant.id,
        before=before,
    )
    note(session, everything=True, catalog=True)  # its keys, grants and per-tenant deployments
