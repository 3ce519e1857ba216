"""Server-side portal sessions (database store); Redis holds them instead when configured."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.db.base import Base
from portal.db.types import GUID, Blob, DateTimeUTC

__all__ = ["WebSession"]


class WebSession(Base):
    """One signed-in browser session; ``key`` is a hash of the cookie value, never the value itself."""

    __tablename__ = "web_sessions"
    __table_args__ = (
        Index("ix_web_sessions_expires_at", "expires_at"),
        Index("ix_web_sessions_user_id", "user_id"),
    )

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(GUID, default=None)
    data: Mapped[bytes] = mapped_column(Blob)
    created_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
