"""Subjects of grants, budgets and limits: a tenant, a user or a key, found by type and reference.

:func:`resolve_subject` turns ``("key", "<id>")`` into the row (404 when unknown, 422 for an unknown
type); :func:`subjects_of_tenant` is the SQL condition "this subject belongs to that tenant" used to
scope lists for tenant admins. A user belongs to every tenant it is a member of; a key to its tenant.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from portal.db.models import ApiKey, Membership, SubjectType, Tenant, User
from portal.errors import NotFoundError, ValidationFailedError

__all__ = [
    "Subject",
    "SubjectRow",
    "parse_subject_type",
    "resolve_subject",
    "subject_row",
    "subjects_of_tenant",
]

SubjectRow = Tenant | User | ApiKey


@dataclass(frozen=True, slots=True)
class Subject:
    """A resolved subject: its type, id, row and the tenants it belongs to."""

    type: SubjectType
    id: uuid.UUID
    row: SubjectRow
    tenant_ids: frozenset[uuid.UUID]

    @property
    def home_tenant(self) -> uuid.UUID | None:
        """The one tenant the subject belongs to, if exactly one (for audit events)."""
        return next(iter(self.tenant_ids)) if len(self.tenant_ids) == 1 else None

    @property
    def label(self) -> str:
        return f"{self.type} {self.id}"


def parse_subject_type(value: str | SubjectType) -> SubjectType:
    """``tenant``, ``user`` or ``key``; 422 for anything else."""
    try:
        return SubjectType(value)
    except ValueError:
        raise ValidationFailedError(
            "unknown subject type", {"subject_type": "one of tenant, user, key"}
        ) from None


def _as_uuid(ref: str | uuid.UUID) -> uuid.UUID | None:
    if isinstance(ref, uuid.UUID):
        return ref
    try:
        return uuid.UUID(ref)
    except ValueError:
        return None


async def _get(session: AsyncSession, kind: SubjectType, ident: uuid.UUID) -> SubjectRow | None:
    if kind is SubjectType.TENANT:
        return await session.get(Tenant, ident)
    if kind is SubjectType.USER:
        return await session.get(User, ident)
    return await session.get(ApiKey, ident)


async def subject_row(session: AsyncSession, subject_type: SubjectType, subject_id: uuid.UUID) -> SubjectRow:
    """The row of a subject given by id; :class:`NotFoundError` if it does not exist."""
    row = await _get(session, subject_type, subject_id)
    if row is None:
        raise NotFoundError(f"{subject_type} {subject_id} does not exist")
    return row


async def resolve_subject(
    session: AsyncSession, subject_type: str | SubjectType, ref: str | uuid.UUID
) -> Subject:
    """The subject ``ref`` of ``subject_type``: an id; a tenant also by slug, a user by email/external id."""
    kind = parse_subject_type(subject_type)
    row: SubjectRow | None = None
    ident = _as_uuid(ref)
    if ident is not None:
        row = await _get(session, kind, ident)
    if row is None and isinstance(ref, str) and ref:
        if kind is SubjectType.TENANT:
            row = await session.scalar(select(Tenant).where(Tenant.slug == ref))
        elif kind is SubjectType.USER:
            row = await session.scalar(select(User).where(or_(User.email == ref, User.external_id == ref)))
    if row is None:
        raise NotFoundError(f"{kind} {ref!s} does not exist")
    return Subject(kind, row.id, row, await _tenants_of(session, kind, row))


async def _tenants_of(session: AsyncSession, kind: SubjectType, row: SubjectRow) -> frozenset[uuid.UUID]:
    if isinstance(row, Tenant):
        return frozenset({row.id})
    if isinstance(row, ApiKey):
        return frozenset({row.tenant_id}) if row.tenant_id is not None else frozenset()
    found = await session.scalars(select(Membership.tenant_id).where(Membership.user_id == row.id))
    return frozenset(found.all())


def subjects_of_tenant(
    tenant_id: uuid.UUID,
    subject_type: InstrumentedAttribute[str],
    subject_id: InstrumentedAttribute[uuid.UUID],
) -> ColumnElement[bool]:
    """SQL condition: the subject columns name ``tenant_id`` itself, one of its keys or one of its members."""
    keys = select(ApiKey.id).where(ApiKey.tenant_id == tenant_id).scalar_subquery()
    members = select(Membership.user_id).where(Membership.tenant_id == tenant_id).scalar_subquery()
    return or_(
        (subject_type == SubjectType.TENANT) & (subject_id == tenant_id),
        (subject_type == SubjectType.KEY) & subject_id.in_(keys),
        (subject_type == SubjectType.USER) & subject_id.in_(members),
    )
