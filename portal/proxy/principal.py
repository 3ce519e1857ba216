"""Who is calling: the :class:`Principal` behind a key, and the cache that finds it without the database.

Lookup: SHA-256 of the presented key -> in-process cache entry. Entries live ``key_cache_ttl_s``
(default 30 s); unknown keys are cached as negative entries for a few seconds so a flood of bad keys
costs no database reads. A miss costs one indexed read of the key with its tenant and user, and one
read of their grants; concurrent misses for the same key share that read.

Freshness: a change made on this instance (revoke, block, grant edit...) invalidates the cache at
once here; other instances see it within ``key_cache_ttl_s`` at most, or at once when Redis carries
invalidations between instances. Expiry is checked on every request against the clock, not the cache.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.db.models import (
    ApiKey,
    Budget,
    Grant,
    KeyStatus,
    SubjectType,
    Tenant,
    TenantStatus,
    User,
    UserStatus,
)
from portal.grants.matcher import Access, LevelGrants, compile_access
from portal.keys.secrets import hash_key
from portal.limits.model import LimitPlan, RateSpec
from portal.limits.plan import build_plan

__all__ = ["KeyCache", "KeyLookupUnavailable", "LimitSet", "Principal", "load_principal"]

NEGATIVE_TTL_S = 5.0
MAX_ENTRIES = 100_000


class KeyLookupUnavailable(Exception):
    """The key is not cached and the database cannot be asked: answer 503, never 401 or 500."""


@dataclass(frozen=True, slots=True)
class LimitSet:
    """Rate limits of one level (``None`` = unlimited)."""

    rpm: int | None = None
    tpm: int | None = None
    parallel: int | None = None


@dataclass(slots=True)
class Principal:
    """A key with everything the hot path needs about it, its user and its tenant."""

    key_id: uuid.UUID
    key_prefix: str
    key_hash: str
    status: str
    expires_at: float | None
    tenant_id: uuid.UUID | None
    tenant_slug: str | None
    tenant_active: bool
    user_id: uuid.UUID | None
    user_active: bool
    role: str | None
    access: Access
    cache_enabled: bool
    log_prompts: bool
    limits: dict[str, LimitSet] = field(default_factory=dict)
    metadata: dict[str, object] = field(default_factory=dict)
    plan: LimitPlan = field(default_factory=LimitPlan)
    client_id: str = ""
    """The key's alias, else its display prefix: how metrics and the access log name the client."""

    def usable(self, now: float) -> bool:
        """Active and not expired (a rotated key stays usable until the end of its grace period)."""
        return self.status == KeyStatus.ACTIVE and (self.expires_at is None or now < self.expires_at)


def _ts(value: dt.datetime | None) -> float | None:
    return None if value is None else value.timestamp()


async def load_principal(session: AsyncSession, key_hash: str) -> Principal | None:
    """Read the principal for ``key_hash`` from the database; ``None`` if no such key."""
    row = (
        await session.execute(
            select(ApiKey, Tenant, User)
            .outerjoin(Tenant, Tenant.id == ApiKey.tenant_id)
            .outerjoin(User, User.id == ApiKey.user_id)
            .where(ApiKey.key_hash == key_hash)
        )
    ).first()
    if row is None:
        return None
    key, tenant, user = row
    subjects = [(SubjectType.KEY, key.id)]
    if tenant is not None:
        subjects.append((SubjectType.TENANT, tenant.id))
    if user is not None:
        subjects.append((SubjectType.USER, user.id))
    grants = (
        await session.scalars(
            select(Grant).where(
                or_(*((Grant.subject_type == t) & (Grant.subject_id == i) for t, i in subjects))
            )
        )
    ).all()
    budgets = (
        await session.scalars(
            select(Budget).where(
                or_(*((Budget.subject_type == t) & (Budget.subject_id == i) for t, i in subjects))
            )
        )
    ).all()
    by_level: dict[str, list[tuple[str, str]]] = {"tenant": [], "user": [], "key": []}
    for grant in grants:
        by_level[grant.subject_type].append((grant.model_pattern, grant.provider_pattern))
    levels: list[LevelGrants | None] = [
        LevelGrants("tenant", tuple(by_level["tenant"])) if tenant is not None else None,
        LevelGrants("user", tuple(by_level["user"])) if user is not None else None,
        LevelGrants("key", tuple(by_level["key"])),
    ]
    limits = {"key": LimitSet(key.rpm_limit, key.tpm_limit, key.max_parallel)}
    if user is not None:
        limits["user"] = LimitSet(user.rpm_limit, user.tpm_limit, user.max_parallel)
    if tenant is not None:
        limits["tenant"] = LimitSet(tenant.rpm_limit, tenant.tpm_limit, tenant.max_parallel)
    subject_ids = {"key": key.id, "user": user.id if user else None, "tenant": tenant.id if tenant else None}
    rates = [
        RateSpec(level, f"{level}:{subject_ids[level]}", limit.rpm, limit.tpm, limit.parallel)
        for level, limit in limits.items()
    ]
    return Principal(
        key_id=key.id,
        key_prefix=key.key_prefix,
        key_hash=key.key_hash,
        status=key.status,
        expires_at=_ts(key.expires_at),
        tenant_id=tenant.id if tenant else None,
        tenant_slug=tenant.slug if tenant else None,
        tenant_active=tenant is None or tenant.status == TenantStatus.ACTIVE,
        user_id=user.id if user else None,
        user_active=user is None or user.status == UserStatus.ACTIVE,
        role=key.role,
        access=compile_access(levels),
        cache_enabled=key.cache_enabled or bool(tenant and tenant.cache_enabled),
        log_prompts=bool(tenant and tenant.log_prompts),
        limits=limits,
        metadata=dict(key.metadata_ or {}),
        plan=build_plan(budgets, rates),
        client_id=key.alias or key.key_prefix,
    )


@dataclass(slots=True)
class _Entry:
    principal: Principal | None
    fresh_until: float


class KeyCache:
    """Process-local cache of principals by key hash, with single-flight loading."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        ttl_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._ttl = ttl_s
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._loading: dict[str, asyncio.Future[Principal | None]] = {}
        self._generation = 0

    def _store(self, key_hash: str, principal: Principal | None, generation: int) -> None:
        if generation != self._generation:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        ttl = self._ttl if principal is not None else min(self._ttl, NEGATIVE_TTL_S)
        self._entries[key_hash] = _Entry(principal, self._clock() + ttl)

    async def _load(self, key_hash: str) -> Principal | None:
        try:
            async with self._sessions() as session:
                return await load_principal(session, key_hash)
        except (SQLAlchemyError, OSError) as exc:
            raise KeyLookupUnavailable(str(exc)) from exc

    async def lookup(self, secret: str) -> Principal | None:
        """The principal for a presented key, ``None`` if unknown; raises :class:`KeyLookupUnavailable`."""
        key_hash = hash_key(secret)
        entry = self._entries.get(key_hash)
        if entry is not None and entry.fresh_until > self._clock():
            return entry.principal
        pending = self._loading.get(key_hash)
        if pending is not None:
            return await asyncio.shield(pending)
        return await self._fill(key_hash, self._load)

    async def _fill(
        self, key_hash: str, load: Callable[[str], Awaitable[Principal | None]]
    ) -> Principal | None:
        future: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
        self._loading[key_hash] = future
        generation = self._generation
        try:
            principal = await load(key_hash)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        else:
            future.set_result(principal)
            self._store(key_hash, principal, generation)
            return principal
        finally:
            self._loading.pop(key_hash, None)

    def invalidate(self, key_hash: str | None = None) -> None:
        """Forget one key (by hash) or, with no argument, everything (after a tenant/user/grant change)."""
        self._generation += 1
        if key_hash is None:
            self._entries.clear()
        else:
            self._entries.pop(key_hash, None)

    def __len__(self) -> int:
        return len(self._entries)
