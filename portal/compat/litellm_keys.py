"""LiteLLM's ``/key/*`` routes: generate, update, delete, info, list, regenerate, block and unblock keys."""

from __future__ import annotations

import math
import uuid
from typing import Any

from litestar import get, post
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.types import ControllerRouterHandler
from sqlalchemy.ext.asyncio import AsyncSession

from portal.api.deps import Caller, Db
from portal.auth.admin import AdminCaller
from portal.auth.roles import Permission, need
from portal.compat.litellm_common import (
    BATCH,
    Body,
    every,
    key_changes,
    key_named,
    key_settings,
    page_bounds,
    set_models,
    set_subject_budget,
    settle_anchor,
    team_named,
    user_named,
    user_or_new,
)
from portal.compat.litellm_schemas import UNSET, KeyDelete, KeyGenerate, KeyRef, KeyRegenerate, KeyUpdate
from portal.compat.litellm_views import Views, expiry, is_anchor, seconds
from portal.db.models import ApiKey, SubjectType
from portal.errors import NotFoundError, ValidationFailedError
from portal.keys import service as keys
from portal.timeutil import utcnow

__all__ = ["KEY_ROUTES"]


@post("/key/generate", opt=need(Permission.KEYS_WRITE), status_code=200, summary="Generate a key (LiteLLM)")
async def key_generate(db: Db, caller: Caller, data: JSONBody[KeyGenerate]) -> Body:
    """Create a key; its secret is in ``key`` (shown only here)."""
    team = await team_named(db, caller, data.team_id) if data.team_id else None
    tenant_id = caller.scoped_tenant(team.id if team else None)
    user = await user_or_new(db, caller, data.user_id) if data.user_id else None
    new = await keys.create_key(
        db,
        caller.actor,
        tenant_id=tenant_id,
        user_id=user.id if user else None,
        alias=data.key_alias,
        secret=data.key,
        expires_at=expiry(data.duration, utcnow()),
        source="litellm",
        metadata=data.metadata,
        rpm_limit=data.rpm_limit,
        tpm_limit=data.tpm_limit,
        max_parallel=data.max_parallel_requests,
    )
    key = new.key
    if data.models or is_anchor(key):
        await set_models(
            db, caller, SubjectType.KEY, key.id, data.models or [], anchor=is_anchor(key), tenant_id=tenant_id
        )
    if data.max_budget is not None:
        await set_subject_budget(
            db, caller, SubjectType.KEY, key.id, data.max_budget, data.budget_duration, tenant_id=tenant_id
        )
    if data.blocked:
        await keys.block_key(db, caller.actor, key)
    view = await Views(db, caller.sees).key(key)
    return {**view, "key": new.secret, "token_id": view["token"], "duration": data.duration}


@post("/key/update", opt=need(Permission.KEYS_WRITE), status_code=200, summary="Update a key (LiteLLM)")
async def key_update(db: Db, caller: Caller, data: JSONBody[KeyUpdate]) -> Body:
    key = await key_named(db, caller, data.key)
    if data.team_id is not UNSET and data.team_id is not None:
        team = await team_named(db, caller, data.team_id)
        if team.id != key.tenant_id:
            raise ValidationFailedError(
                "a key cannot move to another team", {"team_id": "create a new key in that team instead"}
            )
    changes = key_changes(data)
    was_anchor = is_anchor(key)
    if data.user_id is not UNSET:
        changes["user_id"] = (await user_or_new(db, caller, data.user_id)).id if data.user_id else None
    await keys.update_key(db, caller.actor, key, changes)
    if data.models is UNSET:
        await settle_anchor(db, caller, key, was_anchor)
    await key_settings(db, caller, key, data)
    if data.blocked is True:
        await keys.block_key(db, caller.actor, key)
    elif data.blocked is False:
        await keys.unblock_key(db, caller.actor, key)
    return {"key": data.key, **await Views(db, caller.sees).key(key)}


@post("/key/delete", opt=need(Permission.KEYS_WRITE), status_code=200, summary="Delete keys (LiteLLM)")
async def key_delete(db: Db, caller: Caller, data: JSONBody[KeyDelete]) -> Body:
    refs, aliases = data.keys or [], data.key_aliases or []
    if not refs and not aliases:
        raise ValidationFailedError("nothing to delete", {"keys": "give keys or key_aliases"})
    found: dict[uuid.UUID, ApiKey] = {}
    for ref in refs:
        key = await key_named(db, caller, ref)
        found[key.id] = key
    for alias in aliases:
        matches = [k for k in await _listed_keys(db, caller, search=alias) if k.alias == alias]
        if not matches:
            raise NotFoundError(f"no key with key_alias {alias!r}")
        for key in matches:
            keys.check_key_access(caller, key)
            found[key.id] = key
    for key in found.values():
        await keys.delete_key(db, caller.actor, key)
    return {"deleted_keys": [*refs, *aliases]}


@get("/key/info", opt=need(Permission.KEYS_READ), summary="Read a key (LiteLLM)")
async def key_info(db: Db, caller: Caller, key: FromQuery[str | None] = None) -> Body:
    """A key by secret, id or hash; without ``key``, the calling key."""
    ref: str | uuid.UUID | None = key or caller.key_id
    if ref is None:
        raise ValidationFailedError("key required", {"key": "pass ?key=<key>"})
    row = await key_named(db, caller, ref, write=False)
    return {"key": key or str(row.id), "info": await Views(db, caller.sees).key(row)}


async def _listed_keys(
    db: AsyncSession,
    caller: AdminCaller,
    *,
    tenant_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    search: str | None = None,
) -> list[ApiKey]:
    """Every proxy key within the caller's reach (optionally of a tenant, a user, an alias search)."""
    scoped = caller.scoped_tenant(tenant_id)
    return await every(
        lambda after: keys.list_keys(
            db, tenant_id=scoped, user_id=user_id, admin=False, search=search, after=after, limit=BATCH
        ),
        lambda k: k.id,
    )


@get("/key/list", opt=need(Permission.KEYS_READ), summary="List keys (LiteLLM)")
async def key_list(
    db: Db,
    caller: Caller,
    page: FromQuery[int] = 1,
    size: FromQuery[int] = 10,
    user_id: FromQuery[str | None] = None,
    team_id: FromQuery[str | None] = None,
    key_alias: FromQuery[str | None] = None,
    key_hash: FromQuery[str | None] = None,
    return_full_object: FromQuery[bool] = False,
) -> Body:
    """Proxy keys, oldest first: their tokens, or whole key objects with ``return_full_object=true``."""
    page_bounds(page, size, 100, "size")
    tenant_id = (await team_named(db, caller, team_id)).id if team_id else None
    rows: list[ApiKey] = []
    try:
        user = await user_named(db, caller, user_id) if user_id else None
        only = await key_named(db, caller, key_hash, write=False) if key_hash else None
    except NotFoundError:
        pass
    else:
        rows = await _listed_keys(
            db, caller, tenant_id=tenant_id, user_id=user.id if user else None, search=key_alias
        )
        rows = [
            k
            for k in rows
            if (key_alias is None or k.alias == key_alias) and (only is None or k.id == only.id)
        ]
    chosen = rows[(page - 1) * size : page * size]
    views = Views(db, caller.sees)
    items: list[Any] = (
        [await views.key(k) for k in chosen] if return_full_object else [str(k.id) for k in chosen]
    )
    return {
        "keys": items,
        "total_count": len(rows),
        "current_page": page,
        "total_pages": math.ceil(len(rows) / size),
    }


async def _regenerate(db: AsyncSession, caller: AdminCaller, ref: str | None, data: KeyRegenerate) -> Body:
    if not ref:
        raise ValidationFailedError("key required", {"key": "the key to regenerate"})
    old = await key_named(db, caller, ref)
    new = await keys.rotate_key(
        db, caller.actor, old, grace_s=seconds(data.grace_period, "grace_period"), secret=data.new_key
    )
    await keys.update_key(db, caller.actor, new.key, key_changes(data))
    await key_settings(db, caller, new.key, data)
    view = await Views(db, caller.sees).key(new.key)
    return {**view, "key": new.secret, "token_id": view["token"]}


@post(
    "/key/regenerate", opt=need(Permission.KEYS_WRITE), status_code=200, summary="Regenerate a key (LiteLLM)"
)
async def key_regenerate(db: Db, caller: Caller, data: JSONBody[KeyRegenerate]) -> Body:
    """A new secret for the same key settings; the old secret stops working (after ``grace_period``)."""
    return await _regenerate(db, caller, data.key, data)


@post(
    "/key/{key_ref:str}/regenerate",
    opt=need(Permission.KEYS_WRITE),
    status_code=200,
    summary="Regenerate a key (LiteLLM, key in the path)",
)
async def key_regenerate_path(
    db: Db, caller: Caller, key_ref: FromPath[str], data: JSONBody[KeyRegenerate | None] = None
) -> Body:
    return await _regenerate(db, caller, key_ref, data or KeyRegenerate())


@post("/key/block", opt=need(Permission.KEYS_WRITE), status_code=200, summary="Block a key (LiteLLM)")
async def key_block(db: Db, caller: Caller, data: JSONBody[KeyRef]) -> Body:
    key = await keys.block_key(db, caller.actor, await key_named(db, caller, data.key))
    return await Views(db, caller.sees).key(key)


@post("/key/unblock", opt=need(Permission.KEYS_WRITE), status_code=200, summary="Unblock a key (LiteLLM)")
async def key_unblock(db: Db, caller: Caller, data: JSONBody[KeyRef]) -> Body:
    key = await keys.unblock_key(db, caller.actor, await key_named(db, caller, data.key))
    return await Views(db, caller.sees).key(key)


KEY_ROUTES: list[ControllerRouterHandler] = [
    key_generate,
    key_update,
    key_delete,
    key_info,
    key_list,
    key_regenerate,
    key_regenerate_path,
    key_block,
    key_unblock,
]
