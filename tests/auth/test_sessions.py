"""Sessions with an injected clock, on the database store and on Redis: idle and absolute timeouts,
rotation at sign-in, sign-out everywhere; only a hash of the id is stored."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import RequestFactory
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.auth.sessions import COOKIE_NAME, SessionManager
from portal.db.models import WebSession
from tests.conftest import REDIS_URL


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["database", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Redis | None]:
    if request.param == "database":
        yield None
        return
    redis = Redis.from_url(REDIS_URL)
    try:
        yield redis
    finally:
        await redis.aclose()


def _request(cookie: str | None = None) -> Any:
    headers = {"cookie": f"{COOKIE_NAME}={cookie}"} if cookie else {}
    return RequestFactory(app=Litestar()).get("/", headers=headers)


def _manager(sessions: async_sessionmaker[AsyncSession], redis: Redis | None, clock: Clock) -> SessionManager:
    return SessionManager(
        sessions, redis, idle_timeout_s=600, absolute_timeout_s=3600, secure_cookies=True, clock=clock
    )


async def test_idle_and_absolute_timeouts(
    sessions: async_sessionmaker[AsyncSession], store: Redis | None
) -> None:
    clock = Clock()
    manager = _manager(sessions, store, clock)
    user = uuid.uuid4()
    cookie = await manager.start(_request(), user)
    assert cookie.httponly
    assert cookie.secure
    assert cookie.samesite == "lax"
    sid = str(cookie.value)
    clock.now += 590
    assert (await manager.load(_request(sid))) is not None, "used within the idle timeout"
    clock.now += 590
    assert (await manager.load(_request(sid))) is not None, "each use extends the idle window"
    clock.now += 601
    assert (await manager.load(_request(sid))) is None, "idle too long"

    cookie = await manager.start(_request(), user)
    sid = str(cookie.value)
    for _ in range(7):  # busy all along, but past the absolute lifetime
        clock.now += 550
        state = await manager.load(_request(sid))
    assert state is None


async def test_rotation_and_sign_out_everywhere(
    sessions: async_sessionmaker[AsyncSession], store: Redis | None
) -> None:
    clock = Clock()
    manager = _manager(sessions, store, clock)
    anonymous, cookie = await manager.begin_anonymous(_request())
    assert cookie is not None
    planted = str(cookie.value)
    user = uuid.uuid4()
    signed_in = await manager.start(_request(planted), user)
    assert signed_in.value != planted
    assert await manager.load(_request(planted)) is None, "the id from before sign-in is gone"
    other = await manager.start(_request(), user)
    assert await manager.end_all(user) == 2
    for sid in (signed_in.value, other.value):
        assert await manager.load(_request(str(sid))) is None
    del anonymous


async def test_only_a_hash_of_the_id_is_stored(sessions: async_sessionmaker[AsyncSession]) -> None:
    manager = _manager(sessions, None, Clock())
    cookie = await manager.start(_request(), uuid.uuid4())
    async with sessions() as session:
        keys = (await session.scalars(select(WebSession.key))).all()
    assert str(cookie.value) not in keys
    assert all(len(k) == 64 for k in keys)
