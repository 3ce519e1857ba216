"""The proxy's process-wide state: key cache, catalog, router, completion cache and spend writer.

Created once per process at start-up (:meth:`Gateway.start`), closed at shutdown (which drains the
spend writer). The catalog is rebuilt on change here and every ``catalog_refresh_s`` for changes
made on other instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial
from pathlib import Path

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.catalog.crypto import CredentialCipher
from portal.catalog.registry import Catalog, load_catalog
from portal.config import Settings
from portal.keys.static import sync_static_keys
from portal.limits.budgets import reset_due_budgets
from portal.limits.memory import MemoryBackend
from portal.limits.redis_backend import RedisBackend
from portal.limits.service import Backend, Limiter, ThresholdNotifier
from portal.limits.usage import persist_budget_usage
from portal.ops.logs import log_calls
from portal.ops.metrics import observe_calls
from portal.proxy.cache import CompletionCache
from portal.proxy.principal import KeyCache
from portal.proxy.providers.base import UpstreamClient
from portal.proxy.router import Router
from portal.spend.payloads import PayloadFormatter
from portal.spend.redaction import Redactor
from portal.spend.writer import SpendWriter
from portal.timeutil import utcnow

__all__ = ["Gateway"]

log = logging.getLogger(__name__)
INVALIDATION_CHANNEL = "portal:invalidate"
CATALOG_MESSAGE = "catalog"


class Gateway:
    """Everything the ``/v1`` handlers use, built from settings and a session factory."""

    def __init__(
        self, settings: Settings, sessions: async_sessionmaker[AsyncSession], redis: Redis | None = None
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.redis = redis
        self.cipher = CredentialCipher(settings.secret_key) if settings.secret_key else None
        self.keys = KeyCache(sessions, ttl_s=settings.key_cache_ttl_s)
        self.catalog = Catalog()
        self.client = UpstreamClient(limit=2000, keepalive_timeout=60.0)
        self.router = Router(self.client)
        self.writer = SpendWriter(
            sessions,
            interval_s=settings.writer_interval_s,
            spill_dir=Path(settings.data_dir).expanduser(),
            taps=[observe_calls, partial(log_calls, as_json=settings.log_format == "json")]
            if settings.access_log
            else [observe_calls],
            payloads=PayloadFormatter(Redactor(settings.redact_patterns), settings.payload_log_max_chars),
        )
        self.cache = CompletionCache(sessions, ttl_s=settings.cache_ttl_s)
        backend: Backend = RedisBackend(redis) if redis is not None else MemoryBackend()
        self.notifier = ThresholdNotifier(sessions)
        self.limiter = Limiter(
            backend,
            self.notifier,
            fail_open=settings.limits_fail_open,
            default_max_tokens=settings.default_max_tokens,
        )
        self.writer.hooks.append(persist_budget_usage)
        self._tasks: list[asyncio.Task[None]] = []
        self._pending_publish: set[asyncio.Task[int]] = set()
        self._reloads: set[asyncio.Task[None]] = set()
        self._refresher: asyncio.Task[None] | None = None

    def invalidate(self, key_hash: str | None = None) -> None:
        """Forget a cached key (or every principal) here at once, and on other instances via Redis."""
        self.keys.invalidate(key_hash)
        self.announce(key_hash or "*")

    def announce(self, message: str) -> None:
        """Tell the other instances (over Redis, when configured): a key hash, ``*`` or ``catalog``."""
        if self.redis is not None:
            task: asyncio.Task[int] = asyncio.get_running_loop().create_task(self._publish(message))
            self._pending_publish.add(task)
            task.add_done_callback(self._pending_publish.discard)

    async def _publish(self, message: str) -> int:
        assert self.redis is not None
        try:
            return int(await self.redis.publish(INVALIDATION_CHANNEL, message))
        except Exception:  # other instances fall back to the cache TTL
            log.warning("could not publish a key invalidation", exc_info=True)
            return 0

    async def _listen_invalidations(self) -> None:
        assert self.redis is not None
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(INVALIDATION_CHANNEL)
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        data = (
                            message["data"].decode()
                            if isinstance(message["data"], bytes)
                            else message["data"]
                        )
                        if data == CATALOG_MESSAGE:
                            self._spawn_reload()
                        else:
                            self.keys.invalidate(None if data == "*" else data)
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis went away: the cache TTL bounds staleness until it is back
                log.warning("key invalidation channel lost; retrying in 1 s", exc_info=True)
                self.keys.invalidate()
                await asyncio.sleep(1.0)

    async def _reset_budgets_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.budget_reset_interval_s)
            try:
                async with self.sessions() as session, session.begin():
                    done = await reset_due_budgets(session, utcnow())
                if done:
                    self.invalidate()
            except Exception:  # retried next round; the hot path computes periods itself
                log.warning("budget period reset failed; will retry", exc_info=True)

    async def reload_catalog(self) -> None:
        """Rebuild the catalog from the database and the config."""
        async with self.sessions() as session:
            self.catalog = await load_catalog(session, self.settings, self.cipher)

    def _spawn_reload(self) -> None:
        async def reload() -> None:
            try:
                await self.reload_catalog()
            except Exception:  # the periodic refresh retries
                log.warning("catalog reload after a change failed", exc_info=True)

        task = asyncio.get_running_loop().create_task(reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.catalog_refresh_s)
            try:
                await self.reload_catalog()
            except Exception:  # keep serving with the last good catalog
                log.warning("catalog refresh failed; keeping the previous catalog", exc_info=True)

    async def start(self) -> None:
        """Load static keys and the catalog, start background tasks.

        A database that is down or not migrated yet does not stop the process: it starts, reports
        not ready on ``/readyz``, and the periodic refresh picks the catalog up once it can.
        """
        try:
            if self.settings.api_keys:
                await sync_static_keys(self.sessions, self.settings)
            await self.reload_catalog()
        except Exception as exc:  # start anyway; readiness tells the orchestrator
            log.warning("could not load keys and catalog at start-up (%s); will retry", exc)
        self.writer.start()
        self._tasks.append(asyncio.create_task(self._reset_budgets_forever(), name="portal-budget-resets"))
        if self.redis is not None:
            self._tasks.append(asyncio.create_task(self._listen_invalidations(), name="portal-invalidations"))
        self._refresher = asyncio.create_task(self._refresh_forever(), name="portal-catalog-refresh")

    async def close(self) -> None:
        """Stop background work, flush spend, close upstream connections."""
        for task in [self._refresher, *self._tasks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.notifier.drain()
        await self.writer.close()
        await self.cache.close()
        await self.client.aclose()
