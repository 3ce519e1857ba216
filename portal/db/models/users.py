"""People: operators and tenant members, their SSO identities, and their tenant memberships."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.db.base import Base, TimestampMixin, UUIDPrimaryKey
from portal.db.models.limits_mixin import LimitColumns
from portal.db.types import GUID, DateTimeUTC, JsonB

__all__ = ["Membership", "MembershipRole", "User", "UserIdentity", "UserRole", "UserStatus"]


class UserRole(StrEnum):
    """Global role of a person in the portal; ``none`` means only tenant memberships apply."""

    ADMIN = "admin"
    OPERATOR = "operator"
    AUDITOR = "auditor"
    NONE = "none"


class UserStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class MembershipRole(StrEnum):
    TENANT_ADMIN = "tenant_admin"
    MEMBER = "member"


class User(UUIDPrimaryKey, LimitColumns, TimestampMixin, Base):
    """A person (or a LiteLLM ``user_id``): may sign in to the portal and may own keys."""

    __tablename__ = "users"

    external_id: Mapped[str | None] = mapped_column(String(200), unique=True, default=None)
    email: Mapped[str | None] = mapped_column(String(320), unique=True, default=None)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16), default=UserRole.NONE)
    status: Mapped[str] = mapped_column(String(16), default=UserStatus.ACTIVE)
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JsonB, default=dict)


class UserIdentity(UUIDPrimaryKey, TimestampMixin, Base):
    """A link from a user to an SSO subject (one OIDC issuer or LDAP directory, one subject)."""

    __tablename__ = "user_identities"
    __table_args__ = (UniqueConstraint("provider", "subject"),)

    user_id: Mapped[uuid.UUID] = mapped_column(GUID, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str] = mapped_column(String(255))
    groups: Mapped[list[str]] = mapped_column(JsonB, default=list)


class Membership(UUIDPrimaryKey, TimestampMixin, Base):
    """A user's role in one tenant; ``source`` says whether SSO group mapping manages it."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "tenant_id"),)

    user_id: Mapped[uuid.UUID] = mapped_column(GUID, ForeignKey("users.id", ondelete="CASCADE"))
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        GUID, ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16), default=MembershipRole.MEMBER)
    source: Mapped[str] = mapped_column(String(16), default="manual")
