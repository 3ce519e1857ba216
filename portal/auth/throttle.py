"""Sign-in throttling: after too many failures for one account, or from one client address, within a
window, further attempts are refused until the window passes (429), before any password is checked.

Counters live in Redis when configured (shared by every instance), else in this process.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis.asyncio import Redis

__all__ = ["LoginThrottle"]

WINDOW_S = 900
IP_FACTOR = 4


class LoginThrottle:
    """Counts failed sign-ins per account and per client address."""

    def __init__(
        self,
        redis: Redis | None,
        max_failures: int,
        *,
        clock: Callable[[], float] = time.time,
        namespace: str = "portal:login:",
    ) -> None:
        self._redis = redis
        self._namespace = namespace
        self.max_failures = max_failures
        self._clock = clock
        self._memory: dict[str, list[float]] = {}

    def _keys(self, account: str, ip: str | None) -> list[tuple[str, int]]:
        keys = [(f"{self._namespace}acct:{account.strip().lower()}", self.max_failures)]
        if ip:
            keys.append((f"{self._namespace}ip:{ip}", self.max_failures * IP_FACTOR))
        return keys

    async def blocked_for(self, account: str, ip: str | None) -> float | None:
        """Seconds until another attempt is allowed, or ``None`` when it is allowed now."""
        now = self._clock()
        waits: list[float] = []
        for key, limit in self._keys(account, ip):
            if self._redis is not None:
                count = int(await self._redis.get(key) or 0)
                if count >= limit:
                    ttl_ms = await self._redis.pttl(key)
                    waits.append(max(1.0, ttl_ms / 1000))
            else:
                recent = [t for t in self._memory.get(key, []) if t > now - WINDOW_S]
                self._memory[key] = recent
                if len(recent) >= limit:
                    waits.append(max(1.0, recent[0] + WINDOW_S - now))
        return max(waits) if waits else None

    async def failed(self, account: str, ip: str | None) -> None:
        now = self._clock()
        for key, _ in self._keys(account, ip):
            if self._redis is not None:
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.incr(key)
                    pipe.expire(key, WINDOW_S, nx=True)
                    await pipe.execute()
            else:
                self._memory.setdefault(key, []).append(now)

    async def succeeded(self, account: str) -> None:
        """A successful sign-in clears the account's failures (not the address's)."""
        key = self._keys(account, None)[0][0]
        if self._redis is not None:
            await self._redis.delete(key)
        else:
            self._memory.pop(key, None)
