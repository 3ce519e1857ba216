"""Keys declared in the YAML config (the COO-LLM seed's ``api_keys:``), registered at start-up.

Each becomes an ordinary key row (``source = "config"``) with its grants (``allowed_models`` x
``allowed_providers``) and per-minute limits, so it is logged, billed and shown like any other key.
Re-running is idempotent; the config is the source of truth for these keys' grants and limits.
"""

from __future__ import annotations

import logging

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal import audit
from portal.audit.service import snapshot
from portal.config import Settings, StaticKeyConfig
from portal.db.models import ApiKey, Grant, SubjectType, Tenant
from portal.keys.secrets import display_prefix, hash_key

__all__ = ["sync_static_keys"]

log = logging.getLogger(__name__)
_ACTOR = audit.Actor(type="system", label="config file")


async def _sync_one(session: AsyncSession, spec: StaticKeyConfig) -> None:
    digest = hash_key(spec.key)
    tenant_id = None
    if spec.tenant:
        tenant_id = await session.scalar(select(Tenant.id).where(Tenant.slug == spec.tenant))
        if tenant_id is None:
            log.warning(
                "config api_keys: tenant %r does not exist; key %s has no tenant",
                spec.tenant,
                display_prefix(spec.key),
            )
    key = await session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    created = key is None
    if key is None:
        key = ApiKey(key_hash=digest, key_prefix=display_prefix(spec.key), source="config")
        session.add(key)
    key.alias = spec.alias
    key.metadata_ = dict(spec.metadata)
    key.tenant_id = tenant_id
    key.rpm_limit = spec.limits.req_per_min
    key.tpm_limit = spec.limits.tokens_per_min
    await session.flush()
    wanted = {(m, p) for m in spec.allowed_models for p in spec.allowed_providers}
    existing = {
        (g.model_pattern, g.provider_pattern)
        for g in (
            await session.scalars(
                select(Grant).where(Grant.subject_type == SubjectType.KEY, Grant.subject_id == key.id)
            )
        ).all()
    }
    if existing != wanted:
        await session.execute(
            delete(Grant).where(Grant.subject_type == SubjectType.KEY, Grant.subject_id == key.id)
        )
        session.add_all(
            Grant(subject_type=SubjectType.KEY, subject_id=key.id, model_pattern=m, provider_pattern=p)
            for m, p in sorted(wanted)
        )
    if created:
        await audit.record(
            session,
            _ACTOR,
            "key.created",
            target_type="key",
            target_id=key.id,
            tenant_id=tenant_id,
            after={**snapshot(key), "grants": sorted(wanted)},
        )


async def sync_static_keys(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    """Register every config key (another instance doing the same at once is harmless)."""
    for spec in settings.api_keys:
        try:
            async with sessions() as session, session.begin():
                await _sync_one(session, spec)
        except IntegrityError:
            log.info("config key %s registered concurrently by another instance", display_prefix(spec.key))
