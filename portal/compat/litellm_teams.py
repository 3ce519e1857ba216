"""LiteLLM's ``/team/*`` routes: a team is a tenant, with its models, budget, limits and members."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import get, post
from litestar.params import FromQuery, JSONBody
from litestar.types import ControllerRouterHandler
from sqlalchemy.ext.asyncio import AsyncSession

from portal.api.deps import Caller, Db
from portal.auth.admin import AdminCaller
from portal.auth.roles import Permission, need
from portal.compat.litellm_common import (
    BATCH,
    Body,
    change_budget,
    every,
    set_models,
    set_subject_budget,
    team_named,
    user_named,
    user_or_new,
)
from portal.compat.litellm_schemas import (
    UNSET,
    Member,
    TeamDelete,
    TeamMemberAdd,
    TeamMemberDelete,
    TeamNew,
    TeamUpdate,
)
from portal.compat.litellm_views import Views, member_role, slug_of
from portal.db.models import SubjectType, Tenant, TenantStatus, User
from portal.errors import ConflictError, NotFoundError, ValidationFailedError
from portal.tenants import service as tenants
from portal.users import service as users

__all__ = ["TEAM_ROUTES"]


async def _free_slug(db: AsyncSession, base: str) -> str:
    slug = base
    while True:
        try:
            await tenants.get_tenant_by_slug(db, slug)
        except NotFoundError:
            return slug
        slug = f"{base[:57].rstrip('-')}-{uuid.uuid4().hex[:6]}"


async def _add_members(
    db: AsyncSession, caller: AdminCaller, tenant: Tenant, members: list[Member]
) -> list[User]:
    added = []
    for member in members:
        user = await user_or_new(db, caller, member.user_id, member.user_email)
        await users.add_member(
            db, caller.actor, tenant_id=tenant.id, user_id=user.id, role=member_role(member.role)
        )
        added.append(user)
    return added


@post("/team/new", opt=need(Permission.TENANTS_WRITE), status_code=200, summary="Create a team (LiteLLM)")
async def team_new(db: Db, caller: Caller, data: JSONBody[TeamNew]) -> Body:
    """A tenant; ``team_id``, if given, becomes its slug (so it keeps naming the team)."""
    if data.team_id:
        slug = slug_of(data.team_id)
        try:
            await tenants.get_tenant(db, data.team_id)
        except NotFoundError:
            pass
        else:
            raise ConflictError(f"Team id = {data.team_id} already exists. Please use a different team id.")
    else:
        slug = await _free_slug(db, slug_of(data.team_alias or "team"))
    tenant = await tenants.create_tenant(
        db,
        caller.actor,
        slug=slug,
        name=data.team_alias or data.team_id or slug,
        metadata=data.metadata or {},
        rpm_limit=data.rpm_limit,
        tpm_limit=data.tpm_limit,
        max_parallel=data.max_parallel_requests,
        status=TenantStatus.SUSPENDED if data.blocked else TenantStatus.ACTIVE,
    )
    await set_models(
        db, caller, SubjectType.TENANT, tenant.id, data.models or [], anchor=True, tenant_id=tenant.id
    )
    if data.max_budget is not None:
        await set_subject_budget(
            db,
            caller,
            SubjectType.TENANT,
            tenant.id,
            data.max_budget,
            data.budget_duration,
            tenant_id=tenant.id,
        )
    await _add_members(db, caller, tenant, data.members_with_roles or [])
    return await Views(db, caller.sees).team(tenant)


@get("/team/info", opt=need(Permission.TENANTS_READ), summary="Read a team with its keys (LiteLLM)")
async def team_info(db: Db, caller: Caller, team_id: FromQuery[str | None] = None) -> Body:
    if not team_id:
        raise ValidationFailedError("team_id required", {"team_id": "pass ?team_id=<team_id>"})
    tenant = await team_named(db, caller, team_id)
    views = Views(db, caller.sees)
    return {
        "team_id": str(tenant.id),
        "team_info": await views.team(tenant),
        "keys": [await views.key(k) for k in await views.keys_of(tenant_id=tenant.id)],
        "team_memberships": [],
    }


@get("/team/list", opt=need(Permission.TENANTS_READ), summary="List teams (LiteLLM)")
async def team_list(db: Db, caller: Caller, user_id: FromQuery[str | None] = None) -> list[Body]:
    only = caller.tenant_id if caller.tenant_scoped else None
    rows = await every(
        lambda after: tenants.list_tenants(db, only=only, after=after, limit=BATCH), lambda t: t.id
    )
    if user_id:
        user = await user_named(db, caller, user_id)
        mine = {m.tenant_id for m in await users.user_tenants(db, user.id)}
        rows = [t for t in rows if t.id in mine]
    views = Views(db, caller.sees)
    out = []
    for tenant in rows:
        team = await views.team(tenant)
        team["keys"] = [await views.key(k) for k in await views.keys_of(tenant_id=tenant.id)]
        out.append(team)
    return out


@post("/team/update", opt=need(Permission.TENANTS_WRITE), status_code=200, summary="Update a team (LiteLLM)")
async def team_update(db: Db, caller: Caller, data: JSONBody[TeamUpdate]) -> Body:
    tenant = await team_named(db, caller, data.team_id)
    changes: dict[str, Any] = {}
    if isinstance(data.team_alias, str) and data.team_alias:
        changes["name"] = data.team_alias
    if data.metadata is not UNSET:
        changes["metadata"] = data.metadata or {}
    for field, column in (
        ("tpm_limit", "tpm_limit"),
        ("rpm_limit", "rpm_limit"),
        ("max_parallel_requests", "max_parallel"),
    ):
        if getattr(data, field) is not UNSET:
            changes[column] = getattr(data, field)
    if isinstance(data.blocked, bool):
        changes["status"] = TenantStatus.SUSPENDED if data.blocked else TenantStatus.ACTIVE
    await tenants.update_tenant(db, caller.actor, tenant, changes)
    if data.models is not UNSET:
        await set_models(
            db, caller, SubjectType.TENANT, tenant.id, data.models or [], anchor=True, tenant_id=tenant.id
        )
    await change_budget(
        db, caller, SubjectType.TENANT, tenant.id, data.max_budget, data.budget_duration, tenant_id=tenant.id
    )
    return {"team_id": str(tenant.id), "data": await Views(db, caller.sees).team(tenant)}


@post("/team/delete", opt=need(Permission.TENANTS_WRITE), status_code=200, summary="Delete teams (LiteLLM)")
async def team_delete(db: Db, caller: Caller, data: JSONBody[TeamDelete]) -> Body:
    """Delete teams with their keys."""
    found = {t.id: t for t in [await team_named(db, caller, ref) for ref in data.team_ids]}
    for tenant in found.values():
        await tenants.delete_tenant(db, caller.actor, tenant)
    return {"deleted_teams": data.team_ids}


@post(
    "/team/member_add",
    opt=need(Permission.USERS_WRITE),
    status_code=200,
    summary="Add team members (LiteLLM)",
)
async def team_member_add(db: Db, caller: Caller, data: JSONBody[TeamMemberAdd]) -> Body:
    tenant = await team_named(db, caller, data.team_id)
    members = data.member if isinstance(data.member, list) else [data.member]
    added = await _add_members(db, caller, tenant, members)
    views = Views(db, caller.sees)
    return {**await views.team(tenant), "updated_users": [await views.user(u) for u in added]}


@post(
    "/team/member_delete",
    opt=need(Permission.USERS_WRITE),
    status_code=200,
    summary="Remove a team member (LiteLLM)",
)
async def team_member_delete(db: Db, caller: Caller, data: JSONBody[TeamMemberDelete]) -> Body:
    tenant = await team_named(db, caller, data.team_id)
    ref = data.user_id or data.user_email
    if not ref:
        raise ValidationFailedError("user required", {"user_id": "give user_id or user_email"})
    user = await user_named(db, caller, ref)
    await users.remove_member(db, caller.actor, tenant_id=tenant.id, user_id=user.id)
    return await Views(db, caller.sees).team(tenant)


TEAM_ROUTES: list[ControllerRouterHandler] = [
    team_new,
    team_info,
    team_list,
    team_update,
    team_delete,
    team_member_add,
    team_member_delete,
]
