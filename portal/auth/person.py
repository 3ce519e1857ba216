"""The person behind a portal session, what they may do, and the guard every page route goes through.

A person's role is their global role (``admin``, ``operator``, ``auditor``) or, without one, their
tenant memberships (``tenant_admin`` or ``member`` of each tenant). Every page route declares its rule
in ``opt``: ``page="public"``, ``page="signed_in"`` or ``page=Permission.X``; :func:`page_guard`
enforces it and refuses a route that declares none (fail closed). Signed-out visitors are sent to
the sign-in page; signed-in people without the permission get 403.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from sqlalchemy import select

from portal.auth.admin import AdminCaller
from portal.auth.roles import ROLE_PERMISSIONS, Permission
from portal.auth.sessions import SessionManager
from portal.db.models import AdminRole, Membership, MembershipRole, Tenant, User, UserRole, UserStatus
from portal.state import AppResources

__all__ = ["Person", "PersonMembership", "SignInRequired", "current_person", "page", "page_guard"]

_SCOPE_KEY = "portal_person"


class SignInRequired(NotAuthorizedException):
    """A signed-out visitor on a page that needs a person: the pages send them to ``/login``."""


@dataclass(frozen=True, slots=True)
class PersonMembership:
    tenant_id: uuid.UUID
    slug: str
    name: str
    role: str


@dataclass(frozen=True, slots=True)
class Person:
    """A signed-in person: their user row's essentials and their memberships."""

    user_id: uuid.UUID
    email: str | None
    display_name: str
    role: str
    memberships: tuple[PersonMembership, ...]
    ip: str | None = None
    request_id: str | None = None

    @property
    def label(self) -> str:
        return self.email or self.display_name

    @property
    def staff_role(self) -> AdminRole | None:
        """The global role as an admin role (``None`` for tenant members)."""
        return (
            AdminRole(self.role)
            if self.role in {UserRole.ADMIN, UserRole.OPERATOR, UserRole.AUDITOR}
            else None
        )

    def membership(self, tenant_id: uuid.UUID | None) -> PersonMembership | None:
        return next((m for m in self.memberships if m.tenant_id == tenant_id), None)

    def caller(self, tenant_id: uuid.UUID | None = None) -> AdminCaller | None:
        """This person as a caller of the domain services: staff globally, members in one tenant
        (``tenant_id``, default their first); ``None`` if they may act nowhere."""
        staff = self.staff_role
        if staff is not None:
            return AdminCaller(staff, None, None, self.label, self.ip, self.request_id, self.user_id)
        membership = (
            self.membership(tenant_id) if tenant_id else (self.memberships[0] if self.memberships else None)
        )
        if membership is None:
            return None
        role = AdminRole.TENANT_ADMIN if membership.role == MembershipRole.TENANT_ADMIN else AdminRole.MEMBER
        return AdminCaller(
            role, None, membership.tenant_id, self.label, self.ip, self.request_id, self.user_id
        )

    def can(self, permission: Permission) -> bool:
        """Whether any of this person's roles holds ``permission``."""
        staff = self.staff_role
        if staff is not None:
            return permission in ROLE_PERMISSIONS[staff]
        roles = {
            AdminRole.TENANT_ADMIN if m.role == MembershipRole.TENANT_ADMIN else AdminRole.MEMBER
            for m in self.memberships
        }
        return any(permission in ROLE_PERMISSIONS[r] for r in roles)


async def current_person(connection: ASGIConnection[Any, Any, Any, Any]) -> Person | None:
    """The signed-in person of this request (cached on the request), or ``None``."""
    state = connection.scope.setdefault("state", {})
    if _SCOPE_KEY in state:
        cached: Person | None = state[_SCOPE_KEY]
        return cached
    manager: SessionManager = connection.app.state.session_manager
    session_state = await manager.load(connection)
    person = None
    if session_state is not None and session_state.user_id is not None:
        resources: AppResources = connection.app.state.resources
        async with resources.sessions() as session:
            user = await session.get(User, uuid.UUID(session_state.user_id))
            if user is not None and user.status == UserStatus.ACTIVE:
                rows = (
                    await session.execute(
                        select(Membership.tenant_id, Tenant.slug, Tenant.name, Membership.role)
                        .join(Tenant, Tenant.id == Membership.tenant_id)
                        .where(Membership.user_id == user.id)
                        .order_by(Tenant.slug)
                    )
                ).all()
                person = Person(
                    user_id=user.id,
                    email=user.email,
                    display_name=user.display_name,
                    role=user.role,
                    memberships=tuple(PersonMembership(t, s, n, r) for t, s, n, r in rows),
                    ip=connection.client.host if connection.client else None,
                    request_id=connection.headers.get("x-request-id") or os.urandom(16).hex(),
                )
    state[_SCOPE_KEY] = person
    return person


def page(rule: str | Permission) -> dict[str, Any]:
    """The ``opt`` of a page route: ``"public"``, ``"signed_in"`` or a :class:`Permission`."""
    return {"page": rule}


async def page_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Enforce the route's declared rule; a route that declares none is refused."""
    rule = handler.opt.get("page")
    if rule == "public":
        return
    if rule is None:
        raise PermissionDeniedException("this page has no access rule")
    person = await current_person(connection)
    if person is None:
        raise SignInRequired("sign in to see this page")
    if isinstance(rule, Permission) and not person.can(rule):
        raise PermissionDeniedException("your role does not allow this page")
