"""The completion cache: exact-match responses for normalized non-streaming requests, with a TTL."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.db.base import Base
from portal.db.types import Blob, DateTimeUTC

__all__ = ["CompletionCacheEntry"]


class CompletionCacheEntry(Base):
    """``key`` is a SHA-256 of the scope (tenant or key) and the normalized request."""

    __tablename__ = "completion_cache"
    __table_args__ = (Index("ix_completion_cache_expires_at", "expires_at"),)

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(200))
    response: Mapped[bytes] = mapped_column(Blob)
    created_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    hits: Mapped[int] = mapped_column(Integer, default=0)
