"""``/api/keys``: create (the secret shown once), list, read, update, rotate, block/unblock, revoke and
delete keys. A tenant admin acts only on its tenant's keys and never mints a role above its own."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.types import ControllerRouterHandler
from sqlalchemy.ext.asyncio import AsyncSession

from portal.api.deps import Caller, Db
from portal.api.pagination import Page, check_limit, cursor_uuid, page_of
from portal.api.schemas import Limit, money, unset_fields
from portal.auth.admin import AdminCaller
from portal.auth.roles import Permission, need
from portal.db.models import TENANT_SCOPED_ROLES, AdminRole, ApiKey
from portal.errors import NotFoundError, ValidationFailedError
from portal.keys import service
from portal.tenants.service import get_tenant
from portal.timeutil import utcnow
from portal.users.service import check_user_visible, get_user

__all__ = [
    "ROUTES",
    "KeyController",
    "KeyCreate",
    "KeyCreated",
    "KeyOut",
    "KeyPatch",
    "KeyRotate",
    "key_created",
    "key_out",
    "parse_duration",
]

RoleName = Literal["admin", "viewer", "auditor", "tenant_admin"]
StatusName = Literal["active", "blocked", "revoked"]
Alias = Annotated[str, msgspec.Meta(max_length=200)]
Secret = Annotated[str, msgspec.Meta(min_length=8, max_length=512)]
Duration = Annotated[str, msgspec.Meta(pattern=r"^\d+[smhdw]$", examples=["30d", "12h"])]
Grace = Annotated[int, msgspec.Meta(ge=0, le=service.MAX_GRACE_S)]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^(\d+)([smhdw])$")


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    tenant: str | None = None
    user: str | None = None
    alias: Alias | None = None
    role: RoleName | None = None
    key: Secret | None = None
    expires_at: dt.datetime | None = None
    duration: Duration | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    rpm_limit: Limit | None = None
    tpm_limit: Limit | None = None
    max_parallel: Limit | None = None
    cache_enabled: bool = False


class KeyPatch(msgspec.Struct, forbid_unknown_fields=True):
    alias: Alias | msgspec.UnsetType | None = msgspec.UNSET
    user: str | msgspec.UnsetType | None = msgspec.UNSET
    role: RoleName | msgspec.UnsetType | None = msgspec.UNSET
    expires_at: dt.datetime | msgspec.UnsetType | None = msgspec.UNSET
    duration: Duration | msgspec.UnsetType = msgspec.UNSET
    metadata: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    rpm_limit: Limit | msgspec.UnsetType | None = msgspec.UNSET
    tpm_limit: Limit | msgspec.UnsetType | None = msgspec.UNSET
    max_parallel: Limit | msgspec.UnsetType | None = msgspec.UNSET
    cache_enabled: bool | msgspec.UnsetType = msgspec.UNSET


class KeyRotate(msgspec.Struct, forbid_unknown_fields=True):
    grace_period_s: Grace = 0
    key: Secret | None = None


class KeyOut(msgspec.Struct):
    id: uuid.UUID
    key_prefix: str
    alias: str | None
    tenant_id: uuid.UUID | None
    user_id: uuid.UUID | None
    role: str | None
    status: str
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None
    replaced_by_id: uuid.UUID | None
    source: str
    metadata: dict[str, Any]
    rpm_limit: int | None
    tpm_limit: int | None
    max_parallel: int | None
    cache_enabled: bool
    spend_total: str
    created_by: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class KeyCreated(KeyOut):
    """A new key with its secret in ``key``: shown this once, never again."""

    key: str


def key_out(key: ApiKey) -> KeyOut:
    return KeyOut(**_fields(key))


def key_created(new: service.NewKey) -> KeyCreated:
    return KeyCreated(**_fields(new.key), key=new.secret)


def _fields(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "key_prefix": key.key_prefix,
        "alias": key.alias,
        "tenant_id": key.tenant_id,
        "user_id": key.user_id,
        "role": key.role,
        "status": key.status,
        "expires_at": key.expires_at,
        "last_used_at": key.last_used_at,
        "revoked_at": key.revoked_at,
        "replaced_by_id": key.replaced_by_id,
        "source": key.source,
        "metadata": dict(key.metadata_ or {}),
        "rpm_limit": key.rpm_limit,
        "tpm_limit": key.tpm_limit,
        "max_parallel": key.max_parallel,
        "cache_enabled": key.cache_enabled,
        "spend_total": money(key.spend_total),
        "created_by": key.created_by,
        "created_at": key.created_at,
        "updated_at": key.updated_at,
    }


def parse_duration(text: str, field: str = "duration") -> dt.timedelta:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"2w"`` -> a timedelta (422 naming ``field`` otherwise)."""
    match = _DURATION.match(text.strip().lower())
    if match is None or int(match.group(1)) <= 0:
        raise ValidationFailedError("invalid duration", {field: "a duration such as 30d, 12h, 90m, 2w"})
    return dt.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def _expiry(expires_at: dt.datetime | None, duration: str | None) -> dt.datetime | None:
    if expires_at is not None and duration is not None:
        raise ValidationFailedError(
            "expiry given twice", {"duration": "give expires_at or duration, not both"}
        )
    if duration is not None:
        return utcnow() + parse_duration(duration)
    return expires_at


async def _tenant_id(db: AsyncSession, ref: str | None, field: str = "tenant") -> uuid.UUID | None:
    if ref is None:
        return None
    try:
        return (await get_tenant(db, ref)).id
    except NotFoundError as exc:
        raise ValidationFailedError(exc.message, {field: exc.message}) from None


async def _user_id(
    db: AsyncSession, caller: AdminCaller, ref: str | None, field: str = "user"
) -> uuid.UUID | None:
    """The id of the user ``ref`` names (422 naming ``field`` when unknown or out of the caller's reach)."""
    if ref is None:
        return None
    try:
        user = await get_user(db, ref)
        await check_user_visible(db, caller, user)
    except NotFoundError as exc:
        raise ValidationFailedError(exc.message, {field: exc.message}) from None
    return user.id


async def _key(db: AsyncSession, caller: AdminCaller, key_id: str, *, write: bool = True) -> ApiKey:
    """The key ``key_id`` names, within the caller's reach (404), and not above its rights (403)."""
    key = await service.get_key(db, key_id)
    caller.check_visible(key.tenant_id, f"key {key.id}")
    if write:
        service.check_key_access(caller, key)
    return key


class KeyController(Controller):
    """API keys: proxy keys (no role) and admin keys (admin, viewer, auditor, tenant_admin)."""

    path = "/keys"
    tags = ["keys"]

    @get("/", opt=need(Permission.KEYS_READ), summary="List keys")
    async def list_keys(
        self,
        db: Db,
        caller: Caller,
        tenant: Annotated[str | None, QueryParameter(description="tenant id or slug")] = None,
        user: Annotated[str | None, QueryParameter(description="user id, email or external id")] = None,
        status: FromQuery[StatusName | None] = None,
        admin: Annotated[
            bool | None, QueryParameter(description="true: admin keys only; false: proxy keys")
        ] = None,
        search: Annotated[
            str | None, QueryParameter(description="part of the alias, or the key prefix")
        ] = None,
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int] = 100,
    ) -> Page[KeyOut]:
        check_limit(limit)
        tenant_id = await _tenant_id(db, tenant)
        rows = await service.list_keys(
            db,
            tenant_id=caller.scoped_tenant(tenant_id),
            user_id=await _user_id(db, caller, user),
            status=status,
            admin=admin,
            search=search,
            after=cursor_uuid(cursor),
            limit=limit,
        )
        return page_of(rows, limit, lambda k: k.id, key_out)

    @post("/", opt=need(Permission.KEYS_WRITE), summary="Create a key (the secret is in `key`, shown once)")
    async def create_key(self, db: Db, caller: Caller, data: JSONBody[KeyCreate]) -> KeyCreated:
        role = AdminRole(data.role) if data.role else None
        service.check_key_role(caller, role)
        tenant_id = caller.scoped_tenant(await _tenant_id(db, data.tenant))
        if role in TENANT_SCOPED_ROLES and tenant_id is None:
            raise ValidationFailedError(
                "tenant required", {"tenant": "a tenant_admin key belongs to one tenant"}
            )
        new = await service.create_key(
            db,
            caller.actor,
            tenant_id=tenant_id,
            user_id=await _user_id(db, caller, data.user),
            alias=data.alias,
            role=role,
            secret=data.key,
            expires_at=_expiry(data.expires_at, data.duration),
            metadata=data.metadata,
            rpm_limit=data.rpm_limit,
            tpm_limit=data.tpm_limit,
            max_parallel=data.max_parallel,
            cache_enabled=data.cache_enabled,
        )
        return key_created(new)

    @get("/{key_id:str}", opt=need(Permission.KEYS_READ), summary="Read a key")
    async def get_key(self, db: Db, caller: Caller, key_id: FromPath[str]) -> KeyOut:
        return key_out(await _key(db, caller, key_id, write=False))

    @patch("/{key_id:str}", opt=need(Permission.KEYS_WRITE), summary="Update a key")
    async def update_key(
        self, db: Db, caller: Caller, key_id: FromPath[str], data: JSONBody[KeyPatch]
    ) -> KeyOut:
        key = await _key(db, caller, key_id)
        changes = unset_fields(data)
        if "role" in changes:
            changes["role"] = AdminRole(changes["role"]) if changes["role"] else None
            service.check_key_role(caller, changes["role"], key=key)
        if "user" in changes:
            changes["user_id"] = await _user_id(db, caller, changes.pop("user"))
        if "duration" in changes or "expires_at" in changes:
            changes["expires_at"] = _expiry(changes.get("expires_at"), changes.pop("duration", None))
        return key_out(await service.update_key(db, caller.actor, key, changes))

    @delete("/{key_id:str}", opt=need(Permission.KEYS_WRITE), summary="Delete a key")
    async def delete_key(self, db: Db, caller: Caller, key_id: FromPath[str]) -> None:
        await service.delete_key(db, caller.actor, await _key(db, caller, key_id))

    @post("/{key_id:str}/rotate", opt=need(Permission.KEYS_WRITE), summary="Rotate a key (new secret, once)")
    async def rotate_key(
        self, db: Db, caller: Caller, key_id: FromPath[str], data: JSONBody[KeyRotate | None] = None
    ) -> KeyCreated:
        body = data or KeyRotate()
        key = await _key(db, caller, key_id)
        new = await service.rotate_key(db, caller.actor, key, grace_s=body.grace_period_s, secret=body.key)
        return key_created(new)

    @post("/{key_id:str}/revoke", opt=need(Permission.KEYS_WRITE), status_code=200, summary="Revoke a key")
    async def revoke_key(self, db: Db, caller: Caller, key_id: FromPath[str]) -> KeyOut:
        return key_out(await service.revoke_key(db, caller.actor, await _key(db, caller, key_id)))

    @post("/{key_id:str}/block", opt=need(Permission.KEYS_WRITE), status_code=200, summary="Block a key")
    async def block_key(self, db: Db, caller: Caller, key_id: FromPath[str]) -> KeyOut:
        return key_out(await service.block_key(db, caller.actor, await _key(db, caller, key_id)))

    @post("/{key_id:str}/unblock", opt=need(Permission.KEYS_WRITE), status_code=200, summary="Unblock a key")
    async def unblock_key(self, db: Db, caller: Caller, key_id: FromPath[str]) -> KeyOut:
        return key_out(await service.unblock_key(db, caller.actor, await _key(db, caller, key_id)))


ROUTES: list[ControllerRouterHandler] = [KeyController]
