"""Grant rules: storing glob grants for tenants, users and keys (audited).

Patterns are globs (``*``, ``?``, ``[...]``) on public model names and on provider names; a provider
pattern must match at least one provider portal speaks. Every change forgets cached principals
(``note(everything=True)``) so the proxy applies it on the next request.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from portal import audit
from portal.audit.service import snapshot
from portal.db.effects import note
from portal.db.models import Grant, Provider, SubjectType
from portal.errors import NotFoundError, ValidationFailedError
from portal.grants.matcher import pattern_matches
from portal.grants.subjects import parse_subject_type, resolve_subject, subjects_of_tenant

__all__ = [
    "add_grant",
    "check_patterns",
    "delete_grant",
    "get_grant",
    "list_grants",
    "replace_grants",
]

_MAX_MODEL_PATTERN = 200
_MAX_PROVIDER_PATTERN = 64


def _glob_problem(pattern: str, max_length: int) -> str | None:
    if not pattern:
        return "must not be empty (use * for any)"
    if len(pattern) > max_length:
        return f"at most {max_length} characters"
    if any(ch.isspace() or not ch.isprintable() for ch in pattern):
        return "no spaces or control characters"
    depth_open = False
    for ch in pattern:
        if ch == "[":
            if depth_open:
                return "'[' inside a [...] set"
            depth_open = True
        elif ch == "]" and depth_open:
            depth_open = False
    if depth_open:
        return "unclosed '[' (a glob set needs its ']')"
    return None


def check_patterns(model_pattern: str, provider_pattern: str, *, prefix: str = "") -> dict[str, str]:
    """Field errors for a (model pattern, provider pattern) pair; empty when both are valid globs."""
    errors: dict[str, str] = {}
    if problem := _glob_problem(model_pattern, _MAX_MODEL_PATTERN):
        errors[f"{prefix}model_pattern"] = problem
    if problem := _glob_problem(provider_pattern, _MAX_PROVIDER_PATTERN):
        errors[f"{prefix}provider_pattern"] = problem
    elif not any(pattern_matches(provider_pattern, p) for p in Provider):
        errors[f"{prefix}provider_pattern"] = f"matches no provider (providers: {', '.join(Provider)})"
    return errors


async def _audit_tenant(
    session: AsyncSession, subject_type: SubjectType, subject_id: uuid.UUID, tenant_id: uuid.UUID | None
) -> uuid.UUID | None:
    """The subject (which must exist) and the tenant its audit events are filed under."""
    subject = await resolve_subject(session, subject_type, subject_id)
    return tenant_id if tenant_id is not None else subject.home_tenant


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

    Idempotent: an identical grant is returned as is. 404 for an unknown subject, 422 for bad patterns.
    """
    subject_type = parse_subject_type(subject_type)
    if errors := check_patterns(model_pattern, provider_pattern):
        raise ValidationFailedError("invalid grant pattern", errors)
    tenant_id = await _audit_tenant(session, subject_type, subject_id, tenant_id)
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
    note(session, everything=True)
    return grant


async def list_grants(
    session: AsyncSession,
    *,
    subject_type: SubjectType | str | None = None,
    subject_id: uuid.UUID | None = None,
    tenant_id: uuid.UUID | None = None,
) -> Sequence[Grant]:
    """Grants in creation order, optionally of one subject type / subject, or of one tenant's subjects
    (``tenant_id``: the tenant itself, its keys and its members)."""
    query = select(Grant).order_by(Grant.id)
    if subject_type is not None:
        query = query.where(Grant.subject_type == parse_subject_type(subject_type))
    if subject_id is not None:
        query = query.where(Grant.subject_id == subject_id)
    if tenant_id is not None:
        query = query.where(subjects_of_tenant(tenant_id, Grant.subject_type, Grant.subject_id))
    return (await session.scalars(query)).all()


async def get_grant(session: AsyncSession, grant_id: uuid.UUID | str) -> Grant:
    """The grant ``grant_id``, or :class:`NotFoundError`."""
    try:
        ident = grant_id if isinstance(grant_id, uuid.UUID) else uuid.UUID(grant_id)
    except ValueError:
        ident = None
    grant = await session.get(Grant, ident) if ident is not None else None
    if grant is None:
        raise NotFoundError(f"grant {grant_id!s} does not exist")
    return grant


async def delete_grant(
    session: AsyncSession, actor: audit.Actor, grant: Grant, *, tenant_id: uuid.UUID | None = None
) -> None:
    """Remove ``grant`` (``grant.deleted`` audited)."""
    before = snapshot(grant)
    if tenant_id is None:
        try:
            tenant_id = await _audit_tenant(session, SubjectType(grant.subject_type), grant.subject_id, None)
        except NotFoundError:
            tenant_id = None
    await session.delete(grant)
    await session.flush()
    await audit.record(
        session,
        actor,
        "grant.deleted",
        target_type="grant",
        target_id=before["id"],
        tenant_id=tenant_id,
        before=before,
    )
    note(session, everything=True)


async def replace_grants(
    session: AsyncSession,
    actor: audit.Actor,
    *,
    subject_type: SubjectType,
    subject_id: uuid.UUID,
    pairs: list[tuple[str, str]],
    tenant_id: uuid.UUID | None = None,
) -> list[Grant]:
    """Make the subject's grants exactly ``pairs`` of (model pattern, provider pattern); an empty list
    removes them all. Audited as one ``grant.replaced`` event (before and after: the pattern pairs)."""
    subject_type = parse_subject_type(subject_type)
    errors: dict[str, str] = {}
    for index, (model_pattern, provider_pattern) in enumerate(pairs):
        errors.update(check_patterns(model_pattern, provider_pattern, prefix=f"grants[{index}]."))
    if errors:
        raise ValidationFailedError("invalid grant pattern", errors)
    tenant_id = await _audit_tenant(session, subject_type, subject_id, tenant_id)
    wanted = list(dict.fromkeys((str(m), str(p)) for m, p in pairs))
    current = list(await list_grants(session, subject_type=subject_type, subject_id=subject_id))
    before = [[g.model_pattern, g.provider_pattern] for g in current]
    keep = {
        (g.model_pattern, g.provider_pattern): g
        for g in current
        if (g.model_pattern, g.provider_pattern) in wanted
    }
    for grant in current:
        if (grant.model_pattern, grant.provider_pattern) not in keep:
            await session.delete(grant)
    await session.flush()
    result: list[Grant] = []
    for model_pattern, provider_pattern in wanted:
        kept = keep.get((model_pattern, provider_pattern))
        if kept is None:
            kept = Grant(
                subject_type=subject_type,
                subject_id=subject_id,
                model_pattern=model_pattern,
                provider_pattern=provider_pattern,
            )
            session.add(kept)
        result.append(kept)
    await session.flush()
    await audit.record(
        session,
        actor,
        "grant.replaced",
        target_type=str(subject_type),
        target_id=subject_id,
        tenant_id=tenant_id,
        before={"grants": before},
        after={"grants": [[m, p] for m, p in wanted]},
    )
    note(session, everything=True)
    return result
