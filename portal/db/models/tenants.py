"""Tenants: the organisational unit (a team, an app, a customer) that owns keys, members and spend."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from portal.db.base import Base, TimestampMixin, UUIDPrimaryKey
from portal.db.models.limits_mixin import LimitColumns
from portal.db.types import JsonB

__all__ = ["Tenant", "TenantStatus"]


class TenantStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class Tenant(UUIDPrimaryKey, LimitColumns, TimestampMixin, Base):
    """A tenant (LiteLLM: team). Suspending it makes all its keys answer 403."""

    __tablename__ = "tenants"

    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default=TenantStatus.ACTIVE, index=True)
    cache_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    log_prompts: Mapped[bool] = mapped_column(Boolean, default=False)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JsonB, default=dict)
