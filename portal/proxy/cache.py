"""The completion cache (opt-in per tenant or key): exact match on the normalized non-streaming request.

The key is a SHA-256 of the caller's scope (tenant, else key) and the request with its keys sorted,
minus fields that do not change the answer (``user``, ``metadata``). Hits are served from an
in-process LRU, then from the shared ``completion_cache`` table; new answers are written to both, the
table write in the background. Entries expire after ``ttl_s``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import time
from collections import OrderedDict
from typing import Any

import msgspec
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.db.models import CompletionCacheEntry
from portal.timeutil import utcnow

__all__ = ["CompletionCache"]

log = logging.getLogger(__name__)
_IGNORED = frozenset({"user", "metadata"})
_encoder = msgspec.json.Encoder(order="sorted")


class CompletionCache:
    """Two-level exact-match cache of non-streaming answers."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], ttl_s: float = 3600.0, size: int = 10_000
    ) -> None:
        self._sessions = sessions
        self.ttl_s = ttl_s
        self._size = size
        self._memory: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def key(scope: str, body: dict[str, Any]) -> str:
        """The cache key of a request for ``scope``."""
        normalized = {k: v for k, v in body.items() if k not in _IGNORED}
        return hashlib.sha256(scope.encode() + b"\0" + _encoder.encode(normalized)).hexdigest()

    async def get(self, key: str) -> bytes | None:
        """The cached answer, or ``None``."""
        hit = self._memory.get(key)
        now = time.time()
        if hit is not None:
            if hit[0] > now:
                self._memory.move_to_end(key)
                return hit[1]
            del self._memory[key]
        async with self._sessions() as session:
            row = await session.execute(
                select(CompletionCacheEntry.response, CompletionCacheEntry.expires_at).where(
                    CompletionCacheEntry.key == key, CompletionCacheEntry.expires_at > utcnow()
                )
            )
            found = row.first()
        if found is None:
            return None
        response, expires_at = found
        self._remember(key, expires_at.timestamp(), response)
        return bytes(response)

    def _remember(self, key: str, expires: float, response: bytes) -> None:
        self._memory[key] = (expires, response)
        self._memory.move_to_end(key)
        while len(self._memory) > self._size:
            self._memory.popitem(last=False)

    def put(self, key: str, model: str, response: bytes) -> None:
        """Store an answer (the database write happens in the background)."""
        now = utcnow()
        expires = now + dt.timedelta(seconds=self.ttl_s)
        self._remember(key, expires.timestamp(), response)
        task = asyncio.create_task(self._store(key, model, response, now, expires))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _store(
        self, key: str, model: str, response: bytes, now: dt.datetime, expires: dt.datetime
    ) -> None:
        try:
            async with self._sessions() as session, session.begin():
                await session.execute(delete(CompletionCacheEntry).where(CompletionCacheEntry.key == key))
                session.add(
                    CompletionCacheEntry(
                        key=key, model=model, response=response, created_at=now, expires_at=expires
                    )
                )
        except Exception:  # the cache is an optimisation: a failed write only costs a future miss
            log.warning("completion cache: could not store an entry", exc_info=True)

    async def close(self) -> None:
        """Wait for background writes."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
