"""What an admin caller may do with a subject's grants, budgets and limits.

Full admins (and the read-only roles, for reading) reach every subject. A tenant admin reaches only
the keys and users of its own tenant: another tenant's subjects do not exist for it (404); its own
tenant it may read but never change (403: that would widen its own rights).
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from portal.auth.admin import AdminCaller
from portal.db.models import SubjectType
from portal.errors import NotFoundError, PermissionDeniedError, ValidationFailedError
from portal.grants.subjects import Subject, parse_subject_type, resolve_subject

__all__ = [
    "audit_tenant",
    "check_read",
    "check_write",
    "list_filter",
    "subject_for_read",
    "subject_for_write",
]


def check_read(caller: AdminCaller, subject: Subject) -> None:
    """404 when a tenant admin asks about a subject outside its tenant."""
    if caller.tenant_scoped and caller.tenant_id not in subject.tenant_ids:
        raise NotFoundError(f"{subject.type} {subject.id} does not exist")


def check_write(caller: AdminCaller, subject: Subject) -> None:
    """As :func:`check_read`, and 403 when a tenant admin would change its own tenant's rights."""
    check_read(caller, subject)
    if caller.tenant_scoped and subject.type is SubjectType.TENANT:
        raise PermissionDeniedError(
            "a tenant admin key manages grants, budgets and limits of its tenant's keys and users, "
            "not of the tenant itself"
        )


async def subject_for_read(
    session: AsyncSession, caller: AdminCaller, subject_type: str, ref: str | uuid.UUID
) -> Subject:
    subject = await resolve_subject(session, subject_type, ref)
    check_read(caller, subject)
    return subject


async def subject_for_write(
    session: AsyncSession, caller: AdminCaller, subject_type: str, ref: str | uuid.UUID
) -> Subject:
    subject = await resolve_subject(session, subject_type, ref)
    check_write(caller, subject)
    return subject


async def list_filter(
    session: AsyncSession, caller: AdminCaller, subject_type: str | None, subject_id: str | None
) -> uuid.UUID | None:
    """The subject a list of grants or budgets is narrowed to (checked for reading), or ``None``."""
    if subject_id is not None:
        if subject_type is None:
            raise ValidationFailedError("subject_type missing", {"subject_type": "required with subject_id"})
        return (await subject_for_read(session, caller, subject_type, subject_id)).id
    if subject_type is not None:
        parse_subject_type(subject_type)
    return None


def audit_tenant(caller: AdminCaller, subject: Subject) -> uuid.UUID | None:
    """The tenant an audit event about ``subject`` is filed under."""
    return caller.tenant_id if caller.tenant_scoped else subject.home_tenant
