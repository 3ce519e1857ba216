"""LiteLLM's ``/user/*`` routes: a LiteLLM user is a portal user (``user_id`` = its external id) with its
budget, models and (on ``/user/new``) a key."""

from __future__ import annotations

import math
import uuid

from litestar import get, post
from litestar.params import FromQuery, JSONBody
from litestar.types import ControllerRouterHandler

from portal.api.deps import Caller, Db
from portal.auth.roles import Permission, need
from portal.compat.litellm_common import (
    BATCH,
    Body,
    change_budget,
    every,
    no_user_settings,
    page_bounds,
    set_models,
    set_subject_budget,
    team_named,
    user_named,
)
from portal.compat.litellm_schemas import UNSET, UserDelete, UserNew, UserUpdate
from portal.compat.litellm_views import Views, expiry, user_role
from portal.db.models import SubjectType, User, UserRole
from portal.errors import ValidationFailedError
from portal.keys import service as keys
from portal.timeutil import utcnow
from portal.users import service as users
from portal.users.rules import check_global_role, check_manageable

__all__ = ["USER_ROUTES"]


@post("/user/new", opt=need(Permission.USERS_WRITE), status_code=200, summary="Create a user (LiteLLM)")
async def user_new(db: Db, caller: Caller, data: JSONBody[UserNew]) -> Body:
    """A user with its budget and models, and a key for it (the secret in ``key``)."""
    role = user_role(data.user_role)
    check_global_role(caller, role)
    no_user_settings(
        caller,
        {
            "max_budget": data.max_budget,
            "models": data.models or None,
            "tpm_limit": data.tpm_limit,
            "rpm_limit": data.rpm_limit,
            "max_parallel_requests": data.max_parallel_requests,
        },
    )
    teams = [
        await team_named(db, caller, ref)
        for ref in dict.fromkeys([*(data.teams or []), *filter(None, [data.team_id])])
    ]
    for team in teams:
        caller.check_tenant(team.id)
    user = await users.create_user(
        db,
        caller.actor,
        email=data.user_email,
        external_id=data.user_id or str(uuid.uuid4()),
        display_name=data.user_alias or "",
        role=role,
        metadata=data.metadata,
        rpm_limit=data.rpm_limit,
        tpm_limit=data.tpm_limit,
        max_parallel=data.max_parallel_requests,
    )
    home = [team.id for team in teams] or (
        [caller.tenant_id] if caller.tenant_scoped and caller.tenant_id else []
    )
    for tenant_id in home:
        await users.add_member(db, caller.actor, tenant_id=tenant_id, user_id=user.id)
    if not caller.tenant_scoped:
        await set_models(db, caller, SubjectType.USER, user.id, data.models or [], anchor=True)
    if data.max_budget is not None:
        await set_subject_budget(db, caller, SubjectType.USER, user.id, data.max_budget, data.budget_duration)
    secret, expires = None, None
    if data.auto_create_key:
        key_tenant = (await team_named(db, caller, data.team_id)).id if data.team_id else None
        new = await keys.create_key(
            db,
            caller.actor,
            tenant_id=caller.scoped_tenant(key_tenant),
            user_id=user.id,
            alias=data.key_alias,
            expires_at=expiry(data.duration, utcnow()),
            source="litellm",
        )
        secret, expires = new.secret, new.key.expires_at
    view = await Views(db, caller.sees).user(user)
    return {
        **view,
        "key": secret,
        "key_alias": data.key_alias,
        "duration": data.duration,
        "expires": expires,
        "team_id": data.team_id,
    }


@get("/user/info", opt=need(Permission.USERS_READ), summary="Read a user with its keys and teams (LiteLLM)")
async def user_info(db: Db, caller: Caller, user_id: FromQuery[str | None] = None) -> Body:
    if not user_id:
        raise ValidationFailedError("user_id required", {"user_id": "pass ?user_id=<user_id>"})
    user = await user_named(db, caller, user_id)
    views = Views(db, caller.sees)
    info = await views.user(user)
    user_keys = [k for k in await views.keys_of(user_id=user.id) if caller.sees(k.tenant_id)]
    teams = []
    for membership in await users.user_tenants(db, user.id):
        tenant = await views.tenant(membership.tenant_id)
        if tenant is not None and caller.sees(tenant.id):
            teams.append(await views.team(tenant))
    return {
        "user_id": info["user_id"],
        "user_info": info,
        "keys": [await views.key(k) for k in user_keys],
        "teams": teams,
    }


@get("/user/list", opt=need(Permission.USERS_READ), summary="List users (LiteLLM)")
async def user_list(
    db: Db,
    caller: Caller,
    page: FromQuery[int] = 1,
    page_size: FromQuery[int] = 25,
    role: FromQuery[str | None] = None,
    user_ids: FromQuery[str | None] = None,
    user_email: FromQuery[str | None] = None,
    team: FromQuery[str | None] = None,
) -> Body:
    """Users, newest first, with the number of keys each has."""
    page_bounds(page, page_size, 100, "page_size")
    tenant_id = caller.scoped_tenant((await team_named(db, caller, team)).id if team else None)
    rows = await every(
        lambda after: users.list_users(db, tenant_id=tenant_id, search=user_email, after=after, limit=BATCH),
        lambda u: u.id,
    )
    if user_email:
        rows = [u for u in rows if u.email and user_email.lower() in u.email]
    if user_ids:
        wanted = {ref.strip() for ref in user_ids.split(",") if ref.strip()}
        rows = [u for u in rows if wanted & {u.external_id, str(u.id), u.email}]
    if role:
        wanted_role = user_role(role)
        rows = [u for u in rows if UserRole(u.role) == wanted_role]
    rows.reverse()
    views = Views(db, caller.sees)
    chosen = rows[(page - 1) * page_size : page * page_size]
    return {
        "users": [await views.user(u, key_count=True) for u in chosen],
        "total": len(rows),
        "page": page,
        "page_size": page_size,
        "total_pages": math.ceil(len(rows) / page_size),
    }


@post("/user/update", opt=need(Permission.USERS_WRITE), status_code=200, summary="Update a user (LiteLLM)")
async def user_update(db: Db, caller: Caller, data: JSONBody[UserUpdate]) -> Body:
    """Change a user; ``max_budget`` takes effect on the proxy at once (``update-budget``).

    As in LiteLLM, ``null`` and empty lists leave a field alone, except ``max_budget: null``, which
    removes the budget.
    """
    if data.user_id:
        user = await user_named(db, caller, data.user_id)
    elif isinstance(data.user_email, str) and data.user_email:
        user = await user_named(db, caller, data.user_email)
    else:
        raise ValidationFailedError("user required", {"user_id": "give user_id or user_email"})
    given = {
        name: value for name in data.__struct_fields__ if (value := getattr(data, name)) not in (UNSET, None)
    }
    if data.models == []:
        given.pop("models")
    settings = ("max_budget", "budget_duration", "models", "tpm_limit", "rpm_limit", "max_parallel_requests")
    no_user_settings(caller, {name: given.get(name) for name in settings})
    await check_manageable(db, caller, user)
    columns = {
        "user_alias": "display_name",
        "tpm_limit": "tpm_limit",
        "rpm_limit": "rpm_limit",
        "max_parallel_requests": "max_parallel",
        "metadata": "metadata",
    }
    changes = {column: given[field] for field, column in columns.items() if field in given}
    if data.user_id and "user_email" in given:
        changes["email"] = given["user_email"]
    if "user_role" in given:
        changes["role"] = user_role(given["user_role"])
        check_global_role(caller, changes["role"], user.role)
    await users.update_user(db, caller.actor, user, changes)
    if "models" in given:
        await set_models(db, caller, SubjectType.USER, user.id, given["models"], anchor=True)
    await change_budget(
        db, caller, SubjectType.USER, user.id, data.max_budget, given.get("budget_duration", UNSET)
    )
    view = await Views(db, caller.sees).user(user)
    return {"user_id": view["user_id"], "data": view}


@post("/user/delete", opt=need(Permission.USERS_WRITE), status_code=200, summary="Delete users (LiteLLM)")
async def user_delete(db: Db, caller: Caller, data: JSONBody[UserDelete]) -> int:
    """Delete users with their keys; answers the number deleted."""
    found: dict[uuid.UUID, User] = {}
    for ref in data.user_ids:
        user = await user_named(db, caller, ref)
        await check_manageable(db, caller, user, deleting=True)
        found[user.id] = user
    for user in found.values():
        await users.delete_user(db, caller.actor, user)
    return len(found)


USER_ROUTES: list[ControllerRouterHandler] = [
    user_new,
    user_info,
    user_list,
    user_update,
    user_delete,
]
