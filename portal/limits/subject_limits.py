"""Rate limits of one subject: requests and tokens per minute and parallel calls on a tenant, user or key.

The values live on the subject's row (``None`` = unlimited). Setting them is audited as ``limits.set``
with the values before and after, and forgets cached principals so the proxy applies them at once.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from portal import audit
from portal.db.effects import note
from portal.db.models import SubjectType, Tenant
from portal.errors import NotFoundError, ValidationFailedError
from portal.grants.subjects import SubjectRow, resolve_subject

__all__ = ["LIMIT_FIELDS", "check_within_tenant_limits", "limits_of", "set_limits"]

LIMIT_FIELDS = ("rpm_limit", "tpm_limit", "max_parallel")
_MAX = 10**12


def limits_of(row: SubjectRow) -> dict[str, int | None]:
    """The rate-limit values of a tenant, user or key row."""
    return {name: getattr(row, name) for name in LIMIT_FIELDS}


def _check(changes: dict[str, Any]) -> None:
    errors: dict[str, str] = {}
    for name, value in changes.items():
        if name not in LIMIT_FIELDS:
            errors[name] = f"not a limit (limits: {', '.join(LIMIT_FIELDS)})"
        elif value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX
        ):
            errors[name] = f"a whole number from 1 to {_MAX}, or null for unlimited"
    if errors:
        raise ValidationFailedError("invalid limits", errors)


async def check_within_tenant_limits(
    session: AsyncSession, tenant_id: uuid.UUID, values: dict[str, int | None]
) -> None:
    """422 naming each field whose value exceeds (or, being unlimited, escapes) the tenant's own limit."""
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFoundError(f"tenant {tenant_id} does not exist")
    errors: dict[str, str] = {}
    for name, value in values.items():
        cap = getattr(tenant, name)
        if cap is not None and (value is None or value > cap):
            errors[name] = f"at most the tenant's {name} of {cap}"
    if errors:
        raise ValidationFailedError("limits above the tenant's", errors)


async def set_limits(
    session: AsyncSession,
    actor: audit.Actor,
    *,
    subject_type: SubjectType | str,
    subject_id: uuid.UUID,
    changes: dict[str, int | None],
    tenant_id: uuid.UUID | None = None,
) -> SubjectRow:
    """Change some of ``rpm_limit``, ``tpm_limit``, ``max_parallel`` (``None`` = unlimited) of a subject."""
    _check(changes)
    subject = await resolve_subject(session, subject_type, subject_id)
    row = subject.row
    before = limits_of(row)
    for name, value in changes.items():
        setattr(row, name, value)
    await session.flush()
    await audit.record(
        session,
        actor,
        "limits.set",
        target_type=str(subject.type),
        target_id=subject.id,
        tenant_id=tenant_id if tenant_id is not None else subject.home_tenant,
        before=before,
        after=limits_of(row),
    )
    note(session, everything=True)
    return row
