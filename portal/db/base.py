"""The declarative base every table derives from, with its naming convention and common columns."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from advanced_alchemy.base import create_registry
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from uuid_utils.compat import uuid7

from portal.db.types import GUID, Blob, DateTimeUTC, Double, JsonB
from portal.timeutil import utcnow

__all__ = ["Base", "TimestampMixin", "UUIDPrimaryKey"]

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_registry = create_registry(
    {
        uuid.UUID: GUID,
        dt.datetime: DateTimeUTC(timezone=True),
        dict[str, Any]: JsonB,
        list[str]: JsonB,
        float: Double(),
        bytes: Blob,
    }
)
_registry.metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Base(AsyncAttrs, DeclarativeBase):
    """Base class of all portal tables."""

    registry = _registry
    metadata = _registry.metadata


class UUIDPrimaryKey:
    """A time-ordered UUID (v7) primary key: index-friendly and safe to generate on any instance."""

    id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default=uuid7, sort_order=-100)


class TimestampMixin:
    """``created_at`` / ``updated_at`` in UTC."""

    created_at: Mapped[dt.datetime] = mapped_column(
        DateTimeUTC(timezone=True), default=utcnow, sort_order=900
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTimeUTC(timezone=True), default=utcnow, onupdate=utcnow, sort_order=901
    )
