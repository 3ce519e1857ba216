"""One instance at a time: the guard a retention run holds while it works.

With Redis, a Redis lock (``SET NX`` with an expiry, renewed after every batch); without Redis, a
lease row in the database (``leases``): an ``UPDATE ... WHERE expired or mine`` that only one
instance can win. Either way a crashed holder's claim expires after ``ttl_s``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import uuid
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import LockError
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.db.models import Lease
from portal.timeutil import utcnow

__all__ = ["Guard", "LeaseGuard", "RedisGuard", "guard_for"]

NAME = "retention"
TTL_S = 300.0


def _holder() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Guard(Protocol):
    """A claim on a job: acquire it, renew it while working, release it when done."""

    async def acquire(self) -> bool: ...

    async def renew(self) -> bool: ...

    async def release(self) -> None: ...


class RedisGuard:
    """A Redis lock ``portal:lock:<name>`` that expires after ``ttl_s`` unless renewed."""

    def __init__(self, redis: Redis, name: str = NAME, ttl_s: float = TTL_S) -> None:
        self._lock = redis.lock(f"portal:lock:{name}", timeout=ttl_s, blocking=False)

    async def acquire(self) -> bool:
        """Take the lock if nobody holds it."""
        return bool(await self._lock.acquire())

    async def renew(self) -> bool:
        """Reset the expiry; False if the lock was lost meanwhile."""
        try:
            await self._lock.reacquire()
        except LockError:
            return False
        return True

    async def release(self) -> None:
        """Give the lock up (nothing if it already expired)."""
        with contextlib.suppress(LockError):
            await self._lock.release()


class LeaseGuard:
    """A lease row in the database: ``holder`` owns the job until ``expires_at``."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], name: str = NAME, ttl_s: float = TTL_S
    ) -> None:
        self._sessions = sessions
        self._name = name
        self._ttl = dt.timedelta(seconds=ttl_s)
        self.holder = _holder()

    async def _claim(self, *, only_mine: bool) -> bool:
        now = utcnow()
        mine = Lease.holder == self.holder
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(Lease)
                .where(Lease.name == self._name, mine if only_mine else or_(mine, Lease.expires_at < now))
                .values(holder=self.holder, expires_at=now + self._ttl)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def acquire(self) -> bool:
        """Take the lease if it is free or expired (creating its row the first time)."""
        if await self._claim(only_mine=False):
            return True
        try:
            async with self._sessions() as session, session.begin():
                if await session.scalar(select(Lease.name).where(Lease.name == self._name)) is not None:
                    return False
                session.add(Lease(name=self._name, holder=self.holder, expires_at=utcnow() + self._ttl))
        except IntegrityError:  # another instance created it at the same moment
            return False
        return True

    async def renew(self) -> bool:
        """Extend the lease; False if it expired and someone else took it."""
        return await self._claim(only_mine=True)

    async def release(self) -> None:
        """End the lease now."""
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(Lease)
                .where(Lease.name == self._name, Lease.holder == self.holder)
                .values(holder="", expires_at=utcnow())
            )


def guard_for(sessions: async_sessionmaker[AsyncSession], redis: Redis | None) -> Guard:
    """The Redis lock when Redis is configured, otherwise the database lease."""
    return RedisGuard(redis) if redis is not None else LeaseGuard(sessions)
