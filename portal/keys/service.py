"""Key rules: creation (secret shown once, only its hash stored) and lookup by secret."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from portal import audit
from portal.audit.service import snapshot
from portal.db.models import AdminRole, ApiKey
from portal.errors import ConflictError, ValidationFailedError
from portal.keys.secrets import display_prefix, generate_key, hash_key

__all__ = ["NewKey", "create_key", "find_key"]

MIN_SUPPLIED_KEY_LENGTH = 8


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly created key and its secret: the only time the secret exists outside the client."""

    key: ApiKey
    secret: str


async def find_key(session: AsyncSession, secret: str) -> ApiKey | None:
    """The key whose secret is ``secret`` (by hash), whatever its status."""
    key: ApiKey | None = await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(secret)))
    return key


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
) -> NewKey:
    """Create a key (an admin key when ``role`` is set); ``key.created`` is audited without the secret."""
    if secret is not None and len(secret) < MIN_SUPPLIED_KEY_LENGTH:
        raise ValidationFailedError(
            "key too short", {"key": f"a supplied key needs at least {MIN_SUPPLIED_KEY_LENGTH} characters"}
        )
    if role == AdminRole.TENANT_ADMIN and tenant_id is None:
        raise ValidationFailedError(
            "tenant required", {"tenant_id": "a tenant_admin key belongs to one tenant"}
        )
    value = secret or generate_key("admin" if role else "")
    digest = hash_key(value)
    if await session.scalar(select(ApiKey.id).where(ApiKey.key_hash == digest)) is not None:
        raise ConflictError("a key with this value already exists")
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
    return NewKey(key=key, secret=value)
