"""Server-side sessions for people signed in to the portal.

The cookie (``portal_session``: HttpOnly, SameSite=Lax, Secure per ``secure_cookies``) carries a
random id; the store keeps only its SHA-256, so a leaked database or Redis dump cannot be replayed.
Sessions live in the database by default and in Redis when ``redis_url`` is set. A session ends after
``session_idle_timeout_s`` without use or ``session_absolute_timeout_s`` after sign-in, whichever
comes first. The id changes at sign-in (:meth:`SessionManager.start`), so an id planted before
sign-in (session fixation) is worthless afterwards. Anonymous sessions carry sign-in state (the
OIDC ``state``/``nonce``/PKCE verifier) for a few minutes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

import msgspec
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from redis.asyncio import Redis
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.db.models import WebSession
from portal.timeutil import utcnow

__all__ = ["COOKIE_NAME", "Connection", "SessionManager", "SessionState"]

Connection: TypeAlias = ASGIConnection[Any, Any, Any, Any]
COOKIE_NAME = "portal_session"
ANONYMOUS_TTL_S = 900.0
TOUCH_EVERY_S = 60.0
_SCOPE_KEY = "portal_session_state"


@dataclass(slots=True)
class SessionState:
    """One session: who (``user_id``; ``None`` before sign-in), since when, and small state."""

    sid_hash: str
    user_id: str | None
    created_at: float
    last_seen: float
    data: dict[str, Any] = field(default_factory=dict)


class _Stored(msgspec.Struct):
    user_id: str | None
    created_at: float
    last_seen: float
    data: dict[str, Any] = {}


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class _Store(Protocol):
    async def get(self, sid_hash: str) -> _Stored | None: ...
    async def put(self, sid_hash: str, stored: _Stored, ttl_s: float) -> None: ...
    async def delete(self, sid_hash: str) -> None: ...
    async def delete_user(self, user_id: str) -> int: ...


class _DbStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def get(self, sid_hash: str) -> _Stored | None:
        async with self._sessions() as session:
            row = await session.get(WebSession, sid_hash)
            if row is None:
                return None
            if row.expires_at is not None and row.expires_at <= utcnow():
                return None
            return msgspec.json.decode(row.data, type=_Stored)

    async def put(self, sid_hash: str, stored: _Stored, ttl_s: float) -> None:
        expires = utcnow() + dt.timedelta(seconds=ttl_s)
        async with self._sessions() as session, session.begin():
            row = await session.get(WebSession, sid_hash)
            if row is None:
                row = WebSession(key=sid_hash, created_at=utcnow())
                session.add(row)
            row.user_id = uuid.UUID(stored.user_id) if stored.user_id else None
            row.data = msgspec.json.encode(stored)
            row.expires_at = expires
            # Expired rows are swept as sessions come and go; no background job needed.
            await session.execute(delete(WebSession).where(WebSession.expires_at < utcnow()))

    async def delete(self, sid_hash: str) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(delete(WebSession).where(WebSession.key == sid_hash))

    async def delete_user(self, user_id: str) -> int:
        async with self._sessions() as session, session.begin():
            keys = (
                await session.scalars(select(WebSession.key).where(WebSession.user_id == uuid.UUID(user_id)))
            ).all()
            await session.execute(delete(WebSession).where(WebSession.user_id == uuid.UUID(user_id)))
            return len(keys)


class _RedisStore:
    PREFIX = "portal:session:"

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def get(self, sid_hash: str) -> _Stored | None:
        raw = await self._redis.get(self.PREFIX + sid_hash)
        return None if raw is None else msgspec.json.decode(raw, type=_Stored)

    async def put(self, sid_hash: str, stored: _Stored, ttl_s: float) -> None:
        ttl_ms = max(1, int(ttl_s * 1000))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self.PREFIX + sid_hash, msgspec.json.encode(stored), px=ttl_ms)
            if stored.user_id:
                index = f"{self.PREFIX}user:{stored.user_id}"
                pipe.sadd(index, sid_hash)
                pipe.pexpire(index, ttl_ms, gt=True)
                pipe.pexpire(index, ttl_ms, nx=True)
            await pipe.execute()

    async def delete(self, sid_hash: str) -> None:
        await self._redis.delete(self.PREFIX + sid_hash)

    async def delete_user(self, user_id: str) -> int:
        index = f"{self.PREFIX}user:{user_id}"
        members = await self._redis.smembers(index)
        keys = [self.PREFIX + (m.decode() if isinstance(m, bytes) else str(m)) for m in members]
        removed = int(await self._redis.delete(*keys)) if keys else 0
        await self._redis.delete(index)
        return removed


class SessionManager:
    """Loads, starts, updates and ends sessions; one per process."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        redis: Redis | None,
        *,
        idle_timeout_s: float,
        absolute_timeout_s: float,
        secure_cookies: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store: _Store = _RedisStore(redis) if redis is not None else _DbStore(sessions)
        self.idle_timeout_s = idle_timeout_s
        self.absolute_timeout_s = absolute_timeout_s
        self.secure_cookies = secure_cookies
        self._clock = clock

    def _ttl(self, state: SessionState) -> float:
        if state.user_id is None:
            return ANONYMOUS_TTL_S
        now = self._clock()
        return max(1.0, min(self.idle_timeout_s, state.created_at + self.absolute_timeout_s - now))

    async def load(self, connection: Connection) -> SessionState | None:
        """The request's live session, or ``None`` (no cookie, unknown, idle or past its lifetime)."""
        scope_state = connection.scope.setdefault("state", {})
        if _SCOPE_KEY in scope_state:
            cached: SessionState | None = scope_state[_SCOPE_KEY]
            return cached
        state = await self._load(connection.cookies.get(COOKIE_NAME))
        scope_state[_SCOPE_KEY] = state
        return state

    async def _load(self, sid: str | None) -> SessionState | None:
        if not sid or len(sid) > 100:
            return None
        sid_hash = _hash(sid)
        stored = await self._store.get(sid_hash)
        if stored is None:
            return None
        now = self._clock()
        idle = ANONYMOUS_TTL_S if stored.user_id is None else self.idle_timeout_s
        if now - stored.last_seen > idle or (
            stored.user_id is not None and now - stored.created_at > self.absolute_timeout_s
        ):
            await self._store.delete(sid_hash)
            return None
        state = SessionState(sid_hash, stored.user_id, stored.created_at, stored.last_seen, dict(stored.data))
        if now - stored.last_seen > TOUCH_EVERY_S:
            state.last_seen = now
            await self.save(state)
        return state

    async def save(self, state: SessionState) -> None:
        stored = _Stored(state.user_id, state.created_at, state.last_seen, state.data)
        await self._store.put(state.sid_hash, stored, self._ttl(state))

    async def begin_anonymous(self, connection: Connection) -> tuple[SessionState, Cookie | None]:
        """The current session, or a new anonymous one (with the cookie to set) for sign-in state."""
        state = await self.load(connection)
        if state is not None:
            return state, None
        sid = secrets.token_urlsafe(32)
        now = self._clock()
        state = SessionState(_hash(sid), None, now, now, {})
        await self.save(state)
        connection.scope.setdefault("state", {})[_SCOPE_KEY] = state
        return state, self._cookie(sid, ANONYMOUS_TTL_S)

    async def start(
        self,
        connection: Connection,
        user_id: uuid.UUID,
        data: dict[str, Any] | None = None,
    ) -> Cookie:
        """Sign ``user_id`` in: the old session (anonymous or not) ends and a new id is issued."""
        old = await self.load(connection)
        if old is not None:
            await self._store.delete(old.sid_hash)
        sid = secrets.token_urlsafe(32)
        now = self._clock()
        state = SessionState(_hash(sid), str(user_id), now, now, dict(data or {}))
        await self.save(state)
        connection.scope.setdefault("state", {})[_SCOPE_KEY] = state
        return self._cookie(sid, self.absolute_timeout_s)

    async def end(self, connection: Connection) -> Cookie:
        """Sign out this browser; returns the cookie that clears it."""
        state = await self.load(connection)
        if state is not None:
            await self._store.delete(state.sid_hash)
        connection.scope.setdefault("state", {})[_SCOPE_KEY] = None
        return self._cookie("", 0)

    async def end_all(self, user_id: uuid.UUID | str) -> int:
        """Sign a person out everywhere (every browser); returns how many sessions ended."""
        return await self._store.delete_user(str(user_id))

    def _cookie(self, value: str, max_age: float) -> Cookie:
        return Cookie(
            key=COOKIE_NAME,
            value=value,
            max_age=int(max_age),
            path="/",
            httponly=True,
            secure=self.secure_cookies,
            samesite="lax",
        )
