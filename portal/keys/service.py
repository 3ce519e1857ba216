"""Key rules: creation (secret shown once, only its hash stored), lookup, changes, block/unblock,
revocation (final), rotation with a grace period, deletion; and the caller rules every surface applies.

Every change is audited in the caller's transaction and notes the key's hash as an effect, so the
proxy forgets the cached principal as soon as the change commits. A key's rpm/tpm/parallel limits
never exceed its tenant's own limits (when the tenant has them).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from portal import audit
from portal.audit.service import snapshot
from portal.auth.roles import rank_allows
from portal.db.effects import note
from portal.db.models import (
    TENANT_SCOPED_ROLES,
    AdminRole,
    ApiKey,
    Budget,
    Grant,
    KeyStatus,
    SubjectType,
    Tenant,
    User,
)
from portal.errors import ConflictError, NotFoundError, PermissionDeniedError, ValidationFailedError
from portal.keys.secrets import display_prefix, generate_key, hash_key
from portal.timeutil import utcnow

if TYPE_CHECKING:
    from portal.auth.admin import AdminCaller

__all__ = [
    "KEY_FIELDS",
    "LIMIT_FIELDS",
    "MAX_GRACE_S",
    "NewKey",
    "block_key",
    "check_key_access",
    "check_key_role",
    "create_key",
    "delete_key",
    "find_key",
    "get_key",
    "list_keys",
    "revoke_key",
    "rotate_key",
    "unblock_key",
    "update_key",
]

MIN_SUPPLIED_KEY_LENGTH = 8
MAX_GRACE_S = 30 * 86400
LIMIT_FIELDS = ("rpm_limit", "tpm_limit", "max_parallel")
KEY_FIELDS = frozenset(
    {
        "alias",
        "user_id",
        "expires_at",
        "metadata",
        "rpm_limit",
        "tpm_limit",
        "max_parallel",
        "cache_enabled",
        "role",
    }
)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly created key and its secret: the only time the secret exists outside the client."""

    key: ApiKey
    secret: str


# --- caller rules (the admin surfaces apply them before calling the functions below) ---------------


def check_key_role(caller: AdminCaller, wanted: AdminRole | None, *, key: ApiKey | None = None) -> None:
    """403 unless ``caller`` may give a key the role ``wanted``: never above its own role, and never a
    new role for the very key it is using (nobody raises its own role)."""
    own = key is not None and caller.key_id is not None and key.id == caller.key_id
    if own and key is not None and (wanted.value if wanted else None) != key.role:
        raise PermissionDeniedError("a key may not change its own role")
    if not rank_allows(caller.role, wanted):
        raise PermissionDeniedError(f"a {caller.role} key may not mint or assign the {wanted} role")


def check_key_access(caller: AdminCaller, key: ApiKey) -> None:
    """404 for a key outside a tenant admin's tenant; 403 for a key holding more rights than the caller."""
    caller.check_visible(key.tenant_id, f"key {key.id}")
    if not rank_allows(caller.role, AdminRole(key.role) if key.role else None):
        raise PermissionDeniedError(f"a {caller.role} key may not manage a {key.role} key")


# --- lookups -----------------------------------------------------------------------------------------


async def find_key(session: AsyncSession, secret: str) -> ApiKey | None:
    """The key whose secret is ``secret`` (by hash), whatever its status."""
    key: ApiKey | None = await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(secret)))
    return key


async def get_key(session: AsyncSession, ref: str | uuid.UUID) -> ApiKey:
    """The key with id ``ref``, or whose secret or stored hash is ``ref``; else :class:`NotFoundError`."""
    key: ApiKey | None = None
    if isinstance(ref, uuid.UUID):
        key = await session.get(ApiKey, ref)
    else:
        try:
            key = await session.get(ApiKey, uuid.UUID(ref))
        except ValueError:
            key = None
        if key is None and _HEX64.match(ref):
            key = await session.scalar(select(ApiKey).where(ApiKey.key_hash == ref))
        if key is None and ref:
            key = await find_key(session, ref)
    if key is None:
        shown = ref if isinstance(ref, uuid.UUID) or len(ref) <= 36 else display_prefix(ref)
        raise NotFoundError(f"key {shown} does not exist")
    return key


async def list_keys(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    status: str | None = None,
    admin: bool | None = None,
    search: str | None = None,
    after: uuid.UUID | None = None,
    limit: int = 100,
) -> Sequence[ApiKey]:
    """Keys by id (creation order), up to ``limit + 1`` rows after ``after``; ``admin=True``: only keys
    with a role, ``False``: only proxy keys; ``search``: part of the alias or the display prefix."""
    query = select(ApiKey).order_by(ApiKey.id).limit(limit + 1)
    if tenant_id is not None:
        query = query.where(ApiKey.tenant_id == tenant_id)
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    if status:
        query = query.where(ApiKey.status == status)
    if admin is True:
        query = query.where(ApiKey.role.is_not(None))
    elif admin is False:
        query = query.where(ApiKey.role.is_(None))
    if search:
        pattern = f"%{search.lower()}%"
        query = query.where(or_(ApiKey.alias.ilike(pattern), ApiKey.key_prefix.like(f"{search}%")))
    if after is not None:
        query = query.where(ApiKey.id > after)
    return (await session.scalars(query)).all()


# --- validation --------------------------------------------------------------------------------------


def _role(value: AdminRole | str | None) -> AdminRole | None:
    if value is None or isinstance(value, AdminRole):
        return value
    try:
        return AdminRole(value)
    except ValueError:
        choices = ", ".join(r.value for r in AdminRole)
        raise ValidationFailedError("invalid role", {"role": f"one of {choices}, or null"}) from None


async def _check_user(session: AsyncSession, user_id: uuid.UUID | None) -> None:
    if user_id is not None and await session.get(User, user_id) is None:
        raise ValidationFailedError("unknown user", {"user_id": f"user {user_id} does not exist"})


async def _check_limits(session: AsyncSession, tenant_id: uuid.UUID | None, values: dict[str, Any]) -> None:
    """422 for a key limit above its tenant's own limit, or not a positive integer."""
    errors: dict[str, str] = {}
    for name in LIMIT_FIELDS:
        value = values.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            errors[name] = "a positive integer, or null for no key-level limit"
    tenant = await session.get(Tenant, tenant_id) if tenant_id is not None else None
    if tenant is not None:
        for name in LIMIT_FIELDS:
            cap, value = getattr(tenant, name), values.get(name)
            if name not in errors and cap is not None and value is not None and value > cap:
                errors[name] = f"at most the tenant's own {name} ({cap})"
    if errors:
        raise ValidationFailedError("invalid key limits", errors)


def _check_expiry(expires_at: dt.datetime | None) -> dt.datetime | None:
    """``expires_at`` in UTC (a time without a zone is taken as UTC); 422 unless it is in the future."""
    if expires_at is None:
        return None
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=dt.UTC)
    if expires_at <= utcnow():
        raise ValidationFailedError("expiry in the past", {"expires_at": "must be in the future"})
    return expires_at


async def _mint(session: AsyncSession, secret: str | None, role: AdminRole | None) -> tuple[str, str]:
    if secret is not None and len(secret) < MIN_SUPPLIED_KEY_LENGTH:
        raise ValidationFailedError(
            "key too short", {"key": f"a supplied key needs at least {MIN_SUPPLIED_KEY_LENGTH} characters"}
        )
    value = secret or generate_key("admin" if role else "")
    digest = hash_key(value)
    if await session.scalar(select(ApiKey.id).where(ApiKey.key_hash == digest)) is not None:
        raise ConflictError("a key with this value already exists")
    return value, digest


# --- changes -----------------------------------------------------------------------------------------


async def create_key(
    session: AsyncSession,
    actor: audit.Actor,
    *,
    tenant_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    alias: str | None = None,
    role: AdminRole | None = None,
    secret: str | None = None,
    expires_at: dt.datetime | None = None,
    source: str = "api",
    metadata: dict[str, Any] | None = None,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    max_parallel: int | None = None,
    cache_enabled: bool = False,
) -> NewKey:
    """Create a key (an admin key when ``role`` is set); ``key.created`` is audited without the secret."""
    role = _role(role)
    if role in TENANT_SCOPED_ROLES and tenant_id is None:
        raise ValidationFailedError(
            "tenant required", {"tenant_id": "a tenant_admin key belongs to one tenant"}
        )
    if tenant_id is not None and await session.get(Tenant, tenant_id) is None:
        raise ValidationFailedError("unknown tenant", {"tenant_id": f"tenant {tenant_id} does not exist"})
    await _check_user(session, user_id)
    limits = {"rpm_limit": rpm_limit, "tpm_limit": tpm_limit, "max_parallel": max_parallel}
    await _check_limits(session, tenant_id, limits)
    expires_at = _check_expiry(expires_at)
    value, digest = await _mint(session, secret, role)
    key = ApiKey(
        key_hash=digest,
        key_prefix=display_prefix(value),
        alias=alias,
        tenant_id=tenant_id,
        user_id=user_id,
        role=role.value if role else None,
        expires_at=expires_at,
        source=source,
        created_by=actor.label or actor.type,
        metadata_=dict(metadata or {}),
        cache_enabled=cache_enabled,
        **limits,
    )
    session.add(key)
    await session.flush()
    await audit.record(
        session,
        actor,
        "key.created",
        target_type="key",
        target_id=key.id,
        tenant_id=tenant_id,
        after=snapshot(key),
    )
    note(session, key_hashes=[digest])  # a negative cache entry for this value must go
    return NewKey(key=key, secret=value)


def _check_not_revoked(key: ApiKey) -> None:
    if key.status == KeyStatus.REVOKED:
        raise ConflictError(f"key {key.key_prefix} is revoked; a revoked key is final")


async def _record(
    session: AsyncSession, actor: audit.Actor, action: str, key: ApiKey, before: dict[str, Any] | None
) -> None:
    await audit.record(
        session,
        actor,
        action,
        target_type="key",
        target_id=key.id,
        tenant_id=key.tenant_id,
        before=before,
        after=snapshot(key),
    )
    note(session, key_hashes=[key.key_hash])


async def update_key(
    session: AsyncSession, actor: audit.Actor, key: ApiKey, changes: dict[str, Any]
) -> ApiKey:
    """Change fields of ``key`` (any of :data:`KEY_FIELDS`); ``key.updated`` audited with before/after."""
    unknown = set(changes) - KEY_FIELDS
    if unknown:
        raise ValidationFailedError("unknown fields", dict.fromkeys(sorted(unknown), "not a key field"))
    if not changes:
        return key
    _check_not_revoked(key)
    if "role" in changes:
        role = _role(changes["role"])
        if role in TENANT_SCOPED_ROLES and key.tenant_id is None:
            raise ValidationFailedError("tenant required", {"role": "a tenant_admin key needs a tenant"})
        changes = {**changes, "role": role.value if role else None}
    if "user_id" in changes:
        await _check_user(session, changes["user_id"])
    if any(name in changes for name in LIMIT_FIELDS):
        await _check_limits(
            session, key.tenant_id, {n: changes.get(n, getattr(key, n)) for n in LIMIT_FIELDS}
        )
    if "expires_at" in changes:
        changes = {**changes, "expires_at": _check_expiry(changes["expires_at"])}
    if "metadata" in changes and changes["metadata"] is None:
        changes = {**changes, "metadata": {}}
    before = snapshot(key)
    for name, value in changes.items():
        setattr(key, "metadata_" if name == "metadata" else name, value)
    await session.flush()
    await _record(session, actor, "key.updated", key, before)
    return key


async def block_key(session: AsyncSession, actor: audit.Actor, key: ApiKey) -> ApiKey:
    """Block ``key`` (reversible); the proxy refuses it at once. Idempotent."""
    _check_not_revoked(key)
    if key.status == KeyStatus.BLOCKED:
        return key
    before = snapshot(key)
    key.status = KeyStatus.BLOCKED
    await session.flush()
    await _record(session, actor, "key.blocked", key, before)
    return key


async def unblock_key(session: AsyncSession, actor: audit.Actor, key: ApiKey) -> ApiKey:
    """Make a blocked ``key`` active again; 409 for a revoked key. Idempotent."""
    _check_not_revoked(key)
    if key.status == KeyStatus.ACTIVE:
        return key
    before = snapshot(key)
    key.status = KeyStatus.ACTIVE
    await session.flush()
    await _record(session, actor, "key.unblocked", key, before)
    return key


async def revoke_key(session: AsyncSession, actor: audit.Actor, key: ApiKey) -> ApiKey:
    """Revoke ``key`` for good; the proxy refuses it at once. Idempotent."""
    if key.status == KeyStatus.REVOKED:
        return key
    before = snapshot(key)
    key.status = KeyStatus.REVOKED
    key.revoked_at = utcnow()
    await session.flush()
    await _record(session, actor, "key.revoked", key, before)
    return key


def _subject_rows(model: type[Grant] | type[Budget], key_ids: Any) -> Any:
    return (model.subject_type == SubjectType.KEY) & model.subject_id.in_(key_ids)


async def delete_key(session: AsyncSession, actor: audit.Actor, key: ApiKey) -> None:
    """Delete ``key`` with its key-level grants and budgets (``key.deleted`` audited)."""
    before = snapshot(key)
    await session.delete(key)  # the key row first: the spend writer's lock order (portal.db.locking)
    await session.flush()
    for model in (Grant, Budget):
        await session.execute(delete(model).where(_subject_rows(model, [key.id])))
    await audit.record(
        session,
        actor,
        "key.deleted",
        target_type="key",
        target_id=before["id"],
        tenant_id=key.tenant_id,
        before=before,
    )
    note(session, key_hashes=[key.key_hash])


async def rotate_key(
    session: AsyncSession, actor: audit.Actor, key: ApiKey, *, grace_s: int = 0, secret: str | None = None
) -> NewKey:
    """Replace ``key`` by a new secret that inherits its tenant, user, alias, role, limits, metadata,
    expiry, key-level grants and key budgets (with their current usage). The old key keeps working
    ``grace_s`` seconds (0: it stops at once), then expires; ``replaced_by_id`` links the two."""
    _check_not_revoked(key)
    if key.status != KeyStatus.ACTIVE:
        raise ConflictError(f"key {key.key_prefix} is blocked; unblock it before rotating")
    if key.replaced_by_id is not None:
        raise ConflictError(f"key {key.key_prefix} was already rotated; rotate its replacement")
    if not 0 <= grace_s <= MAX_GRACE_S:
        raise ValidationFailedError(
            "invalid grace period", {"grace_period_s": f"between 0 and {MAX_GRACE_S}"}
        )
    role = _role(key.role)
    value, digest = await _mint(session, secret, role)
    now = utcnow()
    new = ApiKey(
        key_hash=digest,
        key_prefix=display_prefix(value),
        alias=key.alias,
        tenant_id=key.tenant_id,
        user_id=key.user_id,
        role=key.role,
        expires_at=key.expires_at,
        source=key.source,
        created_by=actor.label or actor.type,
        metadata_=dict(key.metadata_ or {}),
        cache_enabled=key.cache_enabled,
        rpm_limit=key.rpm_limit,
        tpm_limit=key.tpm_limit,
        max_parallel=key.max_parallel,
    )
    session.add(new)
    await session.flush()
    grants = (await session.scalars(select(Grant).where(_subject_rows(Grant, [key.id])))).all()
    budgets = (await session.scalars(select(Budget).where(_subject_rows(Budget, [key.id])))).all()
    session.add_all(
        Grant(
            subject_type=SubjectType.KEY,
            subject_id=new.id,
            model_pattern=g.model_pattern,
            provider_pattern=g.provider_pattern,
        )
        for g in grants
    )
    session.add_all(
        Budget(
            subject_type=SubjectType.KEY,
            subject_id=new.id,
            kind=b.kind,
            amount=b.amount,
            period=b.period,
            alignment=b.alignment,
            used=b.used,
            period_started_at=b.period_started_at,
            reset_at=b.reset_at,
            soft_threshold=b.soft_threshold,
            soft_notified_at=b.soft_notified_at,
            webhook_url=b.webhook_url,
        )
        for b in budgets
    )
    before = snapshot(key)
    end = now + dt.timedelta(seconds=grace_s)
    key.expires_at = end if key.expires_at is None else min(key.expires_at, end)
    key.replaced_by_id = new.id
    await session.flush()
    await audit.record(
        session,
        actor,
        "key.created",
        target_type="key",
        target_id=new.id,
        tenant_id=new.tenant_id,
        after={
            **snapshot(new),
            "rotated_from": str(key.id),
            "grants": [[g.model_pattern, g.provider_pattern] for g in grants],
            "budgets": [snapshot(b) for b in budgets],
        },
    )
    await _record(session, actor, "key.rotated", key, before)
    note(session, key_hashes=[digest])
    return NewKey(key=new, secret=value)
