"""Group mappings at sign-in: roles and memberships follow the groups the provider sends, on every
sign-in, audited; what an operator set by hand is never taken away by a sign-in."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal import audit
from portal.auth.identity import Identity
from portal.auth.login import sign_in
from portal.config import GroupMapping
from portal.db.models import AuditEvent, Membership, User
from portal.tenants.service import create_tenant
from portal.users.service import add_member, update_user

Sessions = async_sessionmaker[AsyncSession]


async def _sign_in(sessions: Sessions, identity: Identity, mappings: list[GroupMapping]) -> User:
    async with sessions() as session, session.begin():
        return await sign_in(session, identity, mappings, ip="127.0.0.1", request_id=None)


async def _memberships(sessions: Sessions, user_id: uuid.UUID) -> dict[uuid.UUID, tuple[str, str]]:
    async with sessions() as session:
        rows = await session.scalars(select(Membership).where(Membership.user_id == user_id))
        return {m.tenant_id: (m.role, m.source) for m in rows}


async def test_roles_and_memberships_follow_the_groups(sessions: Sessions) -> None:
    actor = audit.Actor(type="test")
    async with sessions() as session, session.begin():
        eng = await create_tenant(session, actor, slug=f"eng-{uuid.uuid4().hex[:6]}")
        ml = await create_tenant(session, actor, slug=f"ml-{uuid.uuid4().hex[:6]}")
        manual = await create_tenant(session, actor, slug=f"man-{uuid.uuid4().hex[:6]}")
    mappings = [
        GroupMapping(group="Portal-Admins", role="admin"),
        GroupMapping(group="auditors", role="auditor"),
        GroupMapping(group="team-eng", tenant=eng.slug, tenant_role="tenant_admin"),
        GroupMapping(group="team-ml", tenant=ml.slug),
        GroupMapping(group="team-ml-leads", tenant=ml.slug, tenant_role="tenant_admin"),
        GroupMapping(group="team-ghost", tenant="no-such-tenant"),
    ]
    subject = f"sub-{uuid.uuid4().hex[:8]}"

    def who(*groups: str) -> Identity:
        return Identity(provider="oidc:corp", subject=subject, email=f"{subject}@example.org", groups=groups)

    user = await _sign_in(
        sessions, who("portal-admins", "auditors", "team-eng", "team-ml", "team-ghost"), mappings
    )
    assert user.role == "admin", "the highest mapped role wins; group names match case-insensitively"
    assert await _memberships(sessions, user.id) == {
        eng.id: ("tenant_admin", "sso"),
        ml.id: ("member", "sso"),
    }

    async with sessions() as session, session.begin():
        await add_member(session, actor, tenant_id=manual.id, user_id=user.id)
    user = await _sign_in(sessions, who("auditors", "team-ml", "team-ml-leads"), mappings)
    assert user.role == "auditor", "left portal-admins: the mapped role goes down"
    assert await _memberships(sessions, user.id) == {
        ml.id: ("tenant_admin", "sso"),
        manual.id: ("member", "manual"),
    }, "eng removed (no longer in team-eng), ml upgraded, the manual membership kept"

    user = await _sign_in(sessions, who(), mappings)
    assert user.role == "none"
    assert await _memberships(sessions, user.id) == {manual.id: ("member", "manual")}

    async with sessions() as session:
        actions = (
            await session.scalars(
                select(AuditEvent.action).where(
                    AuditEvent.action.in_(["user.role_mapped", "member.mapped", "member.unmapped"]),
                    AuditEvent.actor_id == subject,
                )
            )
        ).all()
    assert actions.count("user.role_mapped") == 3
    assert "member.unmapped" in actions
    assert "member.mapped" in actions


async def test_a_role_set_by_hand_is_not_taken_away(sessions: Sessions) -> None:
    subject = f"sub-{uuid.uuid4().hex[:8]}"
    mappings = [GroupMapping(group="portal-admins", role="admin")]

    def who(*groups: str) -> Identity:
        return Identity(provider="oidc:corp", subject=subject, email=f"{subject}@example.org", groups=groups)

    user = await _sign_in(sessions, who("portal-admins"), mappings)
    assert user.role == "admin"
    async with sessions() as session, session.begin():
        row = await session.get(User, user.id)
        assert row is not None
        await update_user(session, audit.Actor(type="test"), row, {"role": "operator"})  # as the API does
    user = await _sign_in(sessions, who(), mappings)
    assert user.role == "operator", "no longer in portal-admins, but the operator role was set by hand"
