"""API keys: virtual keys for the proxy and admin keys (with a role) for the admin API.

Only a SHA-256 hash of the secret is stored, with a short display prefix; the secret is shown once.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.db.base import Base, TimestampMixin, UUIDPrimaryKey
from portal.db.models.limits_mixin import LimitColumns
from portal.db.types import GUID, DateTimeUTC, JsonB

__all__ = ["TENANT_SCOPED_ROLES", "AdminRole", "ApiKey", "KeyStatus"]


class KeyStatus(StrEnum):
    ACTIVE = "active"
    BLOCKED = "blocked"
    REVOKED = "revoked"


class AdminRole(StrEnum):
    """Role on the admin surfaces, of an admin key or of a signed-in person; a key without a role is
    a proxy-only key. ``tenant_admin`` and ``member`` act within one tenant."""

    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"
    AUDITOR = "auditor"
    TENANT_ADMIN = "tenant_admin"
    MEMBER = "member"


TENANT_SCOPED_ROLES = frozenset({AdminRole.TENANT_ADMIN, AdminRole.MEMBER})


class ApiKey(UUIDPrimaryKey, LimitColumns, TimestampMixin, Base):
    """A key. ``expires_at`` also carries the grace period of a rotated key."""

    __tablename__ = "api_keys"
    __table_args__ = (
        Index("ix_api_keys_tenant_id_status", "tenant_id", "status"),
        Index("ix_api_keys_user_id", "user_id"),
    )

    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(24))
    alias: Mapped[str | None] = mapped_column(String(200), default=None)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        GUID, ForeignKey("tenants.id", ondelete="CASCADE"), default=None
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        GUID, ForeignKey("users.id", ondelete="CASCADE"), default=None
    )
    role: Mapped[str | None] = mapped_column(String(16), default=None)
    status: Mapped[str] = mapped_column(String(16), default=KeyStatus.ACTIVE)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    replaced_by_id: Mapped[uuid.UUID | None] = mapped_column(
        GUID, ForeignKey("api_keys.id", ondelete="SET NULL"), default=None
    )
    source: Mapped[str] = mapped_column(String(16), default="api")
    cache_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str | None] = mapped_column(String(200), default=None)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JsonB, default=dict)
