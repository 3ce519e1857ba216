"""Model grants: which subject (tenant, user, key) may use which models and providers. Deny by default."""

from __future__ import annotations

import uuid

from sqlalchemy import Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.db.base import Base, TimestampMixin, UUIDPrimaryKey
from portal.db.types import GUID

__all__ = ["Grant"]


class Grant(UUIDPrimaryKey, TimestampMixin, Base):
    """Allows ``subject`` the models whose public name matches ``model_pattern`` (a glob) and whose
    deployment provider matches ``provider_pattern`` (a glob; ``*`` = any provider)."""

    __tablename__ = "grants"
    __table_args__ = (
        UniqueConstraint("subject_type", "subject_id", "model_pattern", "provider_pattern"),
        Index("ix_grants_subject", "subject_type", "subject_id"),
    )

    subject_type: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[uuid.UUID] = mapped_column(GUID)
    model_pattern: Mapped[str] = mapped_column(String(200), default="*")
    provider_pattern: Mapped[str] = mapped_column(String(64), default="*")
