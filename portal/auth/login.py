"""What happens once an identity provider vouched for someone: find or create the user, apply the
group mappings to their role and tenant memberships, and audit the sign-in; and what a failure is
recorded as. One transaction per sign-in, so the audit events and the changes land together.

Group mappings (``group_mappings`` in the settings) are authoritative for what they manage: the
global role when any mapping for a role exists, and the memberships they created (``source =
"sso"``); a role or membership an operator set by hand is never removed by a sign-in.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from portal import audit
from portal.audit.service import snapshot
from portal.auth.identity import Identity, LoginFailed
from portal.config import GroupMapping
from portal.db.models import Membership, MembershipRole, Tenant, User, UserIdentity, UserRole, UserStatus
from portal.timeutil import utcnow

__all__ = ["record_failure", "sign_in"]

log = logging.getLogger(__name__)
_ROLE_RANK = {UserRole.NONE: 0, UserRole.AUDITOR: 1, UserRole.OPERATOR: 2, UserRole.ADMIN: 3}
_SSO = "sso"


def _matches(mapping: GroupMapping, groups: Sequence[str]) -> bool:
    wanted = mapping.group.lower()
    return any(g.lower() == wanted for g in groups)


async def _find_user(session: AsyncSession, identity: Identity) -> tuple[User | None, bool]:
    """(user, linked): the user linked to this identity, else a pre-provisioned user with its email."""
    user = await session.scalar(
        select(User)
        .join(UserIdentity, UserIdentity.user_id == User.id)
        .where(UserIdentity.provider == identity.provider, UserIdentity.subject == identity.subject)
    )
    if user is not None:
        return user, True
    if identity.email:
        user = await session.scalar(select(User).where(User.email == identity.email.lower()))
        if user is not None:
            has_identity = await session.scalar(
                select(UserIdentity.id).where(UserIdentity.user_id == user.id)
            )
            if has_identity is None:  # provisioned through the API or CLI, never signed in: link it
                return user, False
            raise LoginFailed(
                "this email belongs to an account that signs in another way; ask an administrator",
                reason="email_taken",
                username=identity.username,
            )
    return None, False


async def _apply_mappings(
    session: AsyncSession,
    actor: audit.Actor,
    user: User,
    groups: Sequence[str],
    mappings: Sequence[GroupMapping],
) -> None:
    role_mappings = [m for m in mappings if m.role]
    if role_mappings:
        mapped = max(
            (UserRole(m.role) for m in role_mappings if m.role and _matches(m, groups)),
            key=_ROLE_RANK.__getitem__,
            default=UserRole.NONE,
        )
        source = (user.metadata_ or {}).get("role_source")
        manual = user.role != UserRole.NONE and source != _SSO
        if not manual and user.role != mapped:
            previous = {"role": user.role}
            user.role = mapped
            user.metadata_ = {**(user.metadata_ or {}), "role_source": _SSO}
            await audit.record(
                session,
                actor,
                "user.role_mapped",
                target_type="user",
                target_id=user.id,
                before=previous,
                after={"role": mapped, "groups": list(groups)},
            )
    wanted: dict[uuid.UUID, str] = {}
    for mapping in mappings:
        if mapping.tenant is None or not _matches(mapping, groups):
            continue
        tenant_id = await session.scalar(select(Tenant.id).where(Tenant.slug == mapping.tenant))
        if tenant_id is None:
            log.warning(
                "group mapping %r names tenant %r, which does not exist", mapping.group, mapping.tenant
            )
            continue
        if wanted.get(tenant_id) != MembershipRole.TENANT_ADMIN:
            wanted[tenant_id] = mapping.tenant_role
    current = {
        m.tenant_id: m for m in await session.scalars(select(Membership).where(Membership.user_id == user.id))
    }
    for tenant_id, role in wanted.items():
        membership = current.get(tenant_id)
        before: dict[str, Any] | None = None
        if membership is None:
            membership = Membership(user_id=user.id, tenant_id=tenant_id, role=role, source=_SSO)
            session.add(membership)
        elif membership.source == _SSO and membership.role != role:
            before = snapshot(membership)
            membership.role = role
        else:
            continue
        await session.flush()
        await audit.record(
            session,
            actor,
            "member.mapped",
            target_type="membership",
            target_id=membership.id,
            tenant_id=tenant_id,
            before=before,
            after=snapshot(membership),
        )
    for tenant_id, membership in current.items():
        if membership.source == _SSO and tenant_id not in wanted:
            before = snapshot(membership)
            await session.delete(membership)
            await session.flush()
            await audit.record(
                session,
                actor,
                "member.unmapped",
                target_type="membership",
                target_id=membership.id,
                tenant_id=tenant_id,
                before=before,
            )


async def sign_in(
    session: AsyncSession,
    identity: Identity,
    mappings: Sequence[GroupMapping],
    *,
    ip: str | None,
    request_id: str | None,
) -> User:
    """The user behind ``identity`` (created on first sign-in), with group mappings applied and the
    sign-in audited; :class:`LoginFailed` for a disabled account."""
    actor = audit.Actor(
        type="sso", id=identity.subject[:64], label=identity.provider, ip=ip, request_id=request_id
    )
    user, linked = await _find_user(session, identity)
    if user is None:
        user = User(
            email=identity.email.lower() if identity.email else None,
            display_name=identity.display_name or identity.username or identity.subject,
            role=UserRole.NONE,
            status=UserStatus.ACTIVE,
        )
        session.add(user)
        await session.flush()
        await audit.record(
            session, actor, "user.created", target_type="user", target_id=user.id, after=snapshot(user)
        )
    if user.status != UserStatus.ACTIVE:
        raise LoginFailed("this account is disabled", reason="disabled", username=identity.username)
    if not linked:
        session.add(UserIdentity(user_id=user.id, provider=identity.provider, subject=identity.subject))
    identity_row = await session.scalar(
        select(UserIdentity).where(
            UserIdentity.provider == identity.provider, UserIdentity.subject == identity.subject
        )
    )
    if identity_row is not None:
        identity_row.groups = list(identity.groups)
    if identity.provider != "local" and mappings:
        await _apply_mappings(session, actor, user, identity.groups, mappings)
    user.last_login_at = utcnow()
    if identity.display_name and not user.display_name:
        user.display_name = identity.display_name
    await session.flush()
    await audit.record(
        session,
        audit.Actor(
            type="user", id=str(user.id), label=user.email or user.display_name, ip=ip, request_id=request_id
        ),
        "auth.login",
        target_type="user",
        target_id=user.id,
        after={"provider": identity.provider, "subject": identity.subject, "groups": list(identity.groups)},
    )
    return user


async def record_failure(
    session: AsyncSession,
    provider: str,
    failure: LoginFailed,
    *,
    ip: str | None,
    request_id: str | None,
) -> None:
    """Audit a failed sign-in (never the password)."""
    await audit.record(
        session,
        audit.Actor(type="anonymous", label=failure.username or "", ip=ip, request_id=request_id),
        "auth.login_failed",
        target_type="user",
        target_id=None,
        after={"provider": provider, "reason": failure.reason, "username": failure.username},
    )
