"""Process-wide resources of one running app (engine, sessions, Redis), created at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from portal.config import Settings

__all__ = ["AppResources"]


@dataclass(slots=True)
class AppResources:
    """What handlers reach through ``app.state.resources``; owned and closed by the app's lifespan."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis | None = None
    extras: dict[str, Any] = field(default_factory=dict)
