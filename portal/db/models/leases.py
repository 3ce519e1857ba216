"""Leases: named, expiring claims that let one instance at a time do a periodic job (e.g. retention)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from portal.db.base import Base
from portal.db.types import DateTimeUTC

__all__ = ["Lease"]


class Lease(Base):
    """A job's lease: ``holder`` may do the job until ``expires_at`` (renewed while it works)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64), default="")
    expires_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
