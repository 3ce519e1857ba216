"""User rules: people (operators, tenant members, LiteLLM ``user_id``s) and their tenant memberships.

Emails and external ids are unique; a user is found by id, email or external id. Deleting a user
deletes its keys, memberships and identities (database cascades) and the grants and budgets whose
subject is the user or one of its keys. Every change is audited in the caller's transaction; changes
that the proxy sees through the user's keys (limits, status) forget those keys' cached principals.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from portal import audit
from portal.audit.service import snapshot
from portal.db.effects import note
from portal.db.locking import delete_keys_first
from portal.db.models import (
    ApiKey,
    Budget,
    Grant,
    Membership,
    MembershipRole,
    SubjectType,
    Tenant,
    User,
    UserRole,
    UserStatus,
)
from portal.errors import ConflictError, NotFoundError, ValidationFailedError

if TYPE_CHECKING:
    from portal.auth.admin import AdminCaller

__all__ = [
    "USER_FIELDS",
    "add_member",
    "check_user_visible",
    "create_user",
    "delete_user",
    "get_user",
    "list_members",
    "list_users",
    "remove_member",
    "update_user",
    "user_tenants",
]

USER_FIELDS = frozenset(
    {
        "email",
        "external_id",
        "display_name",
        "role",
        "status",
        "metadata",
        "rpm_limit",
        "tpm_limit",
        "max_parallel",
    }
)
_LIMITS = ("rpm_limit", "tpm_limit", "max_parallel")


# --- lookups -----------------------------------------------------------------------------------------


async def get_user(session: AsyncSession, ref: str | uuid.UUID) -> User:
    """The user with id, email or external id ``ref``, or :class:`NotFoundError`."""
    user: User | None = None
    if isinstance(ref, uuid.UUID):
        user = await session.get(User, ref)
    else:
        try:
            user = await session.get(User, uuid.UUID(ref))
        except ValueError:
            user = None
        if user is None and ref:
            user = await session.scalar(
                select(User).where(or_(User.email == ref.lower(), User.external_id == ref)).limit(1)
            )
    if user is None:
        raise NotFoundError(f"user {ref!s} does not exist")
    return user


async def list_users(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID | None = None,
    search: str | None = None,
    after: uuid.UUID | None = None,
    limit: int = 100,
) -> Sequence[User]:
    """Users by id, up to ``limit + 1`` rows after ``after``; ``tenant_id``: only that tenant's members;
    ``search``: part of the email, external id or display name."""
    query = select(User).order_by(User.id).limit(limit + 1)
    if tenant_id is not None:
        members = select(Membership.user_id).where(Membership.tenant_id == tenant_id)
        query = query.where(User.id.in_(members))
    if search:
        pattern = f"%{search.lower()}%"
        query = query.where(
            or_(User.email.like(pattern), User.external_id.ilike(pattern), User.display_name.ilike(pattern))
        )
    if after is not None:
        query = query.where(User.id > after)
    return (await session.scalars(query)).all()


async def user_tenants(session: AsyncSession, user_id: uuid.UUID) -> Sequence[Membership]:
    """The memberships of ``user_id`` (one per tenant), oldest first."""
    query = select(Membership).where(Membership.user_id == user_id).order_by(Membership.id)
    return (await session.scalars(query)).all()


async def list_members(session: AsyncSession, tenant_id: uuid.UUID) -> Sequence[tuple[Membership, User]]:
    """The members of ``tenant_id`` with their users, in the order they joined."""
    rows = await session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.tenant_id == tenant_id)
        .order_by(Membership.id)
    )
    return [(membership, user) for membership, user in rows.tuples()]


async def check_user_visible(session: AsyncSession, caller: AdminCaller, user: User) -> None:
    """404 for a user who is not a member of a tenant admin's tenant."""
    if not caller.tenant_scoped:
        return
    member = await session.scalar(
        select(Membership.id).where(Membership.user_id == user.id, Membership.tenant_id == caller.tenant_id)
    )
    if member is None:
        raise NotFoundError(f"user {user.id} does not exist")


# --- validation --------------------------------------------------------------------------------------


def _clean(changes: dict[str, Any]) -> dict[str, Any]:
    """Validated and normalised field values (422 naming each bad field)."""
    unknown = set(changes) - USER_FIELDS
    if unknown:
        raise ValidationFailedError("unknown fields", dict.fromkeys(sorted(unknown), "not a user field"))
    errors: dict[str, str] = {}
    out = dict(changes)
    email = out.get("email")
    if email is not None:
        email = str(email).strip().lower()
        local, at, domain = email.partition("@")
        if not (local and at and domain) or " " in email or len(email) > 320:
            errors["email"] = "an email address such as ada@example.com"
        out["email"] = email
    if "external_id" in out and out["external_id"] is not None:
        out["external_id"] = str(out["external_id"]).strip()
        if not out["external_id"] or len(out["external_id"]) > 200:
            errors["external_id"] = "1 to 200 characters, or null"
    if "role" in out:
        try:
            out["role"] = UserRole(out["role"] or UserRole.NONE).value
        except ValueError:
            errors["role"] = "one of " + ", ".join(r.value for r in UserRole)
    if "status" in out:
        try:
            out["status"] = UserStatus(out["status"]).value
        except ValueError:
            errors["status"] = "active or disabled"
    if "display_name" in out:
        out["display_name"] = str(out["display_name"] or "")
        if len(out["display_name"]) > 200:
            errors["display_name"] = "at most 200 characters"
    for name in _LIMITS:
        value = out.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            errors[name] = "a positive integer, or null for no limit"
    if "metadata" in out and out["metadata"] is None:
        out["metadata"] = {}
    if errors:
        raise ValidationFailedError("invalid user", errors)
    return out


async def _check_unique(session: AsyncSession, values: dict[str, Any], user_id: uuid.UUID | None) -> None:
    for name, column in (("email", User.email), ("external_id", User.external_id)):
        value = values.get(name)
        if value is None:
            continue
        taken = await session.scalar(select(User.id).where(column == value))
        if taken is not None and taken != user_id:
            raise ConflictError(f"a user with {name} {value!r} already exists")


async def _key_hashes(session: AsyncSession, user_id: uuid.UUID) -> list[str]:
    return list((await session.scalars(select(ApiKey.key_hash).where(ApiKey.user_id == user_id))).all())


def _apply(user: User, values: dict[str, Any]) -> None:
    for name, value in values.items():
        setattr(user, "metadata_" if name == "metadata" else name, value)


# --- changes -----------------------------------------------------------------------------------------


async def create_user(
    session: AsyncSession,
    actor: audit.Actor,
    *,
    email: str | None = None,
    external_id: str | None = None,
    display_name: str = "",
    role: UserRole = UserRole.NONE,
    metadata: dict[str, Any] | None = None,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    max_parallel: int | None = None,
) -> User:
    """Create a user; ``user.created`` is audited. 409 when the email or external id is taken."""
    values = _clean(
        {
            "email": email,
            "external_id": external_id,
            "display_name": display_name,
            "role": role,
            "metadata": metadata,
            "rpm_limit": rpm_limit,
            "tpm_limit": tpm_limit,
            "max_parallel": max_parallel,
        }
    )
    await _check_unique(session, values, None)
    user = User(status=UserStatus.ACTIVE)
    _apply(user, values)
    session.add(user)
    await session.flush()
    await audit.record(
        session, actor, "user.created", target_type="user", target_id=user.id, after=snapshot(user)
    )
    return user


async def update_user(session: AsyncSession, actor: audit.Actor, user: User, changes: dict[str, Any]) -> User:
    """Change fields of ``user`` (any of :data:`USER_FIELDS`); ``user.updated`` audited with before/after."""
    values = _clean(changes)
    if not values:
        return user
    await _check_unique(session, values, user.id)
    before = snapshot(user)
    _apply(user, values)
    if "role" in values and (user.metadata_ or {}).get("role_source") == "sso":
        # Set by hand now: sign-in group mappings leave it alone from here on.
        user.metadata_ = {k: v for k, v in user.metadata_.items() if k != "role_source"}
    await session.flush()
    await audit.record(
        session,
        actor,
        "user.updated",
        target_type="user",
        target_id=user.id,
        before=before,
        after=snapshot(user),
    )
    note(session, key_hashes=await _key_hashes(session, user.id))
    return user


async def delete_user(session: AsyncSession, actor: audit.Actor, user: User) -> None:
    """Delete ``user`` with its keys, memberships, and the grants and budgets of the user and its keys."""
    before = snapshot(user)
    memberships = await user_tenants(session, user.id)
    # Keys first, then the user, then grants and budgets: the spend writer's lock order.
    keys = await delete_keys_first(session, ApiKey.user_id == user.id)
    key_ids = [key_id for key_id, _ in keys]
    before["keys"] = [str(key_id) for key_id in key_ids]
    before["memberships"] = [{"tenant_id": str(m.tenant_id), "role": m.role} for m in memberships]
    await session.execute(delete(Membership).where(Membership.user_id == user.id))
    await session.delete(user)
    await session.flush()
    for model in (Grant, Budget):
        await session.execute(
            delete(model).where(
                or_(
                    (model.subject_type == SubjectType.USER) & (model.subject_id == user.id),
                    (model.subject_type == SubjectType.KEY) & model.subject_id.in_(key_ids),
                )
            )
        )
    await audit.record(
        session, actor, "user.deleted", target_type="user", target_id=before["id"], before=before
    )
    note(session, key_hashes=[key_hash for _, key_hash in keys])


async def add_member(
    session: AsyncSession,
    actor: audit.Actor,
    *,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    role: MembershipRole = MembershipRole.MEMBER,
) -> Membership:
    """Make ``user_id`` a member of ``tenant_id`` with ``role`` (or change its role); audited as
    ``member.added`` or ``member.updated``. Idempotent."""
    try:
        role = MembershipRole(role)
    except ValueError:
        raise ValidationFailedError("invalid role", {"role": "tenant_admin or member"}) from None
    if await session.get(Tenant, tenant_id) is None:
        raise NotFoundError(f"tenant {tenant_id} does not exist")
    if await session.get(User, user_id) is None:
        raise NotFoundError(f"user {user_id} does not exist")
    membership = await session.scalar(
        select(Membership).where(Membership.tenant_id == tenant_id, Membership.user_id == user_id)
    )
    if membership is not None and membership.role == role:
        return membership
    before = snapshot(membership) if membership is not None else None
    if membership is None:
        membership = Membership(tenant_id=tenant_id, user_id=user_id, role=role.value, source="manual")
        session.add(membership)
    else:
        membership.role = role.value
    await session.flush()
    await audit.record(
        session,
        actor,
        "member.added" if before is None else "member.updated",
        target_type="membership",
        target_id=membership.id,
        tenant_id=tenant_id,
        before=before,
        after=snapshot(membership),
    )
    return membership


async def remove_member(
    session: AsyncSession, actor: audit.Actor, *, tenant_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    """End the membership of ``user_id`` in ``tenant_id`` (``member.removed`` audited); 404 if none."""
    membership = await session.scalar(
        select(Membership).where(Membership.tenant_id == tenant_id, Membership.user_id == user_id)
    )
    if membership is None:
        raise NotFoundError(f"user {user_id} is not a member of tenant {tenant_id}")
    before = snapshot(membership)
    await session.delete(membership)
    await session.flush()
    await audit.record(
        session,
        actor,
        "member.removed",
        target_type="membership",
        target_id=before["id"],
        tenant_id=tenant_id,
        before=before,
    )
