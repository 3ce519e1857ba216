"""``/api/users`` (people: create, list, read, update, delete) and ``/api/tenants/{tenant}/members``
(who belongs to a tenant, with which role). A tenant admin sees and manages only its tenant's members;
only an admin sets a user's global role."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, delete, get, patch, post, put
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.types import ControllerRouterHandler
from sqlalchemy.ext.asyncio import AsyncSession

from portal.api.deps import Caller, Db
from portal.api.pagination import Page, check_limit, cursor_uuid, page_of
from portal.api.schemas import Limit, money, unset_fields
from portal.auth.admin import AdminCaller
from portal.auth.roles import Permission, need
from portal.db.models import Membership, MembershipRole, User, UserRole
from portal.errors import NotFoundError, ValidationFailedError
from portal.tenants.service import get_tenant
from portal.users import service
from portal.users.rules import check_global_role, check_manageable

__all__ = [
    "ROUTES",
    "MemberController",
    "MemberOut",
    "MemberPut",
    "MembershipOut",
    "UserController",
    "UserCreate",
    "UserOut",
    "UserPatch",
    "user_out",
]

UserRoleName = Literal["admin", "operator", "auditor", "none"]
MemberRoleName = Literal["tenant_admin", "member"]
Email = Annotated[str, msgspec.Meta(max_length=320, examples=["ada@example.com"])]
ExternalId = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Name = Annotated[str, msgspec.Meta(max_length=200)]


class UserCreate(msgspec.Struct, forbid_unknown_fields=True):
    email: Email | None = None
    external_id: ExternalId | None = None
    display_name: Name = ""
    role: UserRoleName = "none"
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    rpm_limit: Limit | None = None
    tpm_limit: Limit | None = None
    max_parallel: Limit | None = None
    tenant: str | None = None
    tenant_role: MemberRoleName = "member"


class UserPatch(msgspec.Struct, forbid_unknown_fields=True):
    email: Email | msgspec.UnsetType | None = msgspec.UNSET
    external_id: ExternalId | msgspec.UnsetType | None = msgspec.UNSET
    display_name: Name | msgspec.UnsetType = msgspec.UNSET
    role: UserRoleName | msgspec.UnsetType = msgspec.UNSET
    status: Literal["active", "disabled"] | msgspec.UnsetType = msgspec.UNSET
    metadata: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    rpm_limit: Limit | msgspec.UnsetType | None = msgspec.UNSET
    tpm_limit: Limit | msgspec.UnsetType | None = msgspec.UNSET
    max_parallel: Limit | msgspec.UnsetType | None = msgspec.UNSET


class MembershipOut(msgspec.Struct):
    tenant_id: uuid.UUID
    role: str


class UserOut(msgspec.Struct):
    id: uuid.UUID
    email: str | None
    external_id: str | None
    display_name: str
    role: str
    status: str
    metadata: dict[str, Any]
    rpm_limit: int | None
    tpm_limit: int | None
    max_parallel: int | None
    spend_total: str
    created_at: dt.datetime
    updated_at: dt.datetime
    memberships: list[MembershipOut]


class MemberPut(msgspec.Struct, forbid_unknown_fields=True):
    role: MemberRoleName = "member"


class MemberOut(msgspec.Struct):
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    email: str | None
    external_id: str | None
    display_name: str
    role: str
    source: str
    created_at: dt.datetime


def user_out(user: User, memberships: list[Membership]) -> UserOut:
    return UserOut(
        id=user.id,
        email=user.email,
        external_id=user.external_id,
        display_name=user.display_name,
        role=user.role,
        status=user.status,
        metadata=dict(user.metadata_ or {}),
        rpm_limit=user.rpm_limit,
        tpm_limit=user.tpm_limit,
        max_parallel=user.max_parallel,
        spend_total=money(user.spend_total),
        created_at=user.created_at,
        updated_at=user.updated_at,
        memberships=[MembershipOut(tenant_id=m.tenant_id, role=m.role) for m in memberships],
    )


def member_out(membership: Membership, user: User) -> MemberOut:
    return MemberOut(
        tenant_id=membership.tenant_id,
        user_id=user.id,
        email=user.email,
        external_id=user.external_id,
        display_name=user.display_name,
        role=membership.role,
        source=membership.source,
        created_at=membership.created_at,
    )


async def _view(db: AsyncSession, caller: AdminCaller, user: User) -> UserOut:
    """A user's view; a tenant admin sees only the membership in its own tenant."""
    memberships = [m for m in await service.user_tenants(db, user.id) if caller.sees(m.tenant_id)]
    return user_out(user, memberships)


async def _user(db: AsyncSession, caller: AdminCaller, ref: str) -> User:
    user = await service.get_user(db, ref)
    await service.check_user_visible(db, caller, user)
    return user


class UserController(Controller):
    """People: operators, tenant members, and LiteLLM-style users that own keys."""

    path = "/users"
    tags = ["users"]

    @get("/", opt=need(Permission.USERS_READ), summary="List users")
    async def list_users(
        self,
        db: Db,
        caller: Caller,
        tenant: Annotated[
            str | None, QueryParameter(description="members of this tenant (id or slug)")
        ] = None,
        search: Annotated[str | None, QueryParameter(description="part of the email, id or name")] = None,
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int] = 100,
    ) -> Page[UserOut]:
        check_limit(limit)
        tenant_id = None
        if tenant is not None:
            try:
                tenant_id = (await get_tenant(db, tenant)).id
            except NotFoundError as exc:
                raise ValidationFailedError(exc.message, {"tenant": exc.message}) from None
        rows = await service.list_users(
            db,
            tenant_id=caller.scoped_tenant(tenant_id),
            search=search,
            after=cursor_uuid(cursor),
            limit=limit,
        )
        page = page_of(rows, limit, lambda u: u.id, lambda u: u)
        return Page(items=[await _view(db, caller, u) for u in page.items], next_cursor=page.next_cursor)

    @post("/", opt=need(Permission.USERS_WRITE), summary="Create a user (optionally a member of a tenant)")
    async def create_user(self, db: Db, caller: Caller, data: JSONBody[UserCreate]) -> UserOut:
        check_global_role(caller, data.role)
        tenant_id = None
        if data.tenant is not None:
            try:
                tenant_id = (await get_tenant(db, data.tenant)).id
            except NotFoundError as exc:
                raise ValidationFailedError(exc.message, {"tenant": exc.message}) from None
        tenant_id = caller.scoped_tenant(tenant_id)
        user = await service.create_user(
            db,
            caller.actor,
            email=data.email,
            external_id=data.external_id,
            display_name=data.display_name,
            role=UserRole(data.role),
            metadata=data.metadata,
            rpm_limit=data.rpm_limit,
            tpm_limit=data.tpm_limit,
            max_parallel=data.max_parallel,
        )
        if tenant_id is not None:
            await service.add_member(
                db, caller.actor, tenant_id=tenant_id, user_id=user.id, role=MembershipRole(data.tenant_role)
            )
        return await _view(db, caller, user)

    @get("/{user_ref:str}", opt=need(Permission.USERS_READ), summary="Read a user (id, email or external id)")
    async def get_user(self, db: Db, caller: Caller, user_ref: FromPath[str]) -> UserOut:
        return await _view(db, caller, await _user(db, caller, user_ref))

    @patch("/{user_ref:str}", opt=need(Permission.USERS_WRITE), summary="Update or disable a user")
    async def update_user(
        self, db: Db, caller: Caller, user_ref: FromPath[str], data: JSONBody[UserPatch]
    ) -> UserOut:
        user = await _user(db, caller, user_ref)
        changes = unset_fields(data)
        if "role" in changes:
            check_global_role(caller, changes["role"], user.role)
        await check_manageable(db, caller, user)
        await service.update_user(db, caller.actor, user, changes)
        return await _view(db, caller, user)

    @delete("/{user_ref:str}", opt=need(Permission.USERS_WRITE), summary="Delete a user with its keys")
    async def delete_user(self, db: Db, caller: Caller, user_ref: FromPath[str]) -> None:
        user = await _user(db, caller, user_ref)
        await check_manageable(db, caller, user, deleting=True)
        await service.delete_user(db, caller.actor, user)


class MemberController(Controller):
    """A tenant's members and their roles in it."""

    path = "/tenants/{tenant_ref:str}/members"
    tags = ["users"]

    @staticmethod
    async def _tenant(db: AsyncSession, caller: AdminCaller, tenant_ref: str) -> uuid.UUID:
        tenant = await get_tenant(db, tenant_ref)
        caller.check_visible(tenant.id, f"tenant {tenant_ref}")
        return tenant.id

    @get("/", opt=need(Permission.USERS_READ), summary="List a tenant's members")
    async def list_members(self, db: Db, caller: Caller, tenant_ref: FromPath[str]) -> Page[MemberOut]:
        tenant_id = await self._tenant(db, caller, tenant_ref)
        return Page(items=[member_out(m, u) for m, u in await service.list_members(db, tenant_id)])

    @put("/{user_ref:str}", opt=need(Permission.USERS_WRITE), summary="Add a member or change its role")
    async def put_member(
        self,
        db: Db,
        caller: Caller,
        tenant_ref: FromPath[str],
        user_ref: FromPath[str],
        data: JSONBody[MemberPut],
    ) -> MemberOut:
        tenant_id = await self._tenant(db, caller, tenant_ref)
        user = await service.get_user(db, user_ref)
        membership = await service.add_member(
            db, caller.actor, tenant_id=tenant_id, user_id=user.id, role=MembershipRole(data.role)
        )
        return member_out(membership, user)

    @delete("/{user_ref:str}", opt=need(Permission.USERS_WRITE), summary="Remove a member from the tenant")
    async def remove_member(
        self, db: Db, caller: Caller, tenant_ref: FromPath[str], user_ref: FromPath[str]
    ) -> None:
        tenant_id = await self._tenant(db, caller, tenant_ref)
        user = await service.get_user(db, user_ref)
        await service.remove_member(db, caller.actor, tenant_id=tenant_id, user_id=user.id)


ROUTES: list[ControllerRouterHandler] = [UserController, MemberController]
