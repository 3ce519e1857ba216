"""The proxy's process-wide state: key cache, catalog, router, completion cache and spend writer.

Created once per process at start-up (:meth:`Gateway.start`), closed at shutdown (which drains the
spend writer). The catalog is rebuilt on change here and every ``catalog_refresh_s`` for changes
made on other instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.catalog.crypto import CredentialCipher
from portal.catalog.registry import Catalog, load_catalog
from portal.config import Settings
from portal.keys.static import sync_static_keys
from portal.proxy.cache import CompletionCache
from portal.proxy.principal import KeyCache
from portal.proxy.router import Router
from portal.spend.writer import SpendWriter

__all__ = ["Gateway"]

log = logging.getLogger(__name__)


class Gateway:
    """Everything the ``/v1`` handlers use, built from settings and a session factory."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.cipher = CredentialCipher(settings.secret_key) if settings.secret_key else None
        self.keys = KeyCache(sessions, ttl_s=settings.key_cache_ttl_s)
        self.catalog = Catalog()
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(600.0, connect=10.0),
            limits=httpx.Limits(max_connections=2000, max_keepalive_connections=500, keepalive_expiry=60.0),
            follow_redirects=False,
            trust_env=False,
        )
        self.router = Router(self.client)
        self.writer = SpendWriter(sessions, spill_dir=Path(settings.data_dir).expanduser())
        self.cache = CompletionCache(sessions, ttl_s=settings.cache_ttl_s)
        self._refresher: asyncio.Task[None] | None = None

    async def reload_catalog(self) -> None:
        """Rebuild the catalog from the database and the config."""
        async with self.sessions() as session:
            self.catalog = await load_catalog(session, self.settings, self.cipher)

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
        self._refresher = asyncio.create_task(self._refresh_forever(), name="portal-catalog-refresh")

    async def close(self) -> None:
        """Stop background work, flush spend, close upstream connections."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await self.writer.close()
        await self.cache.close()
        await self.client.aclose()
