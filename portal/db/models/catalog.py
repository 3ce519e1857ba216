"""The model catalog: public models, the deployments that serve them, and encrypted credentials."""

from __future__ import annotations

import uuid
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from portal.db.base import Base, TimestampMixin, UUIDPrimaryKey
from portal.db.types import GUID, Blob, Double, JsonB, Money

__all__ = ["Credential", "Deployment", "Model", "Provider"]


class Provider(StrEnum):
    """Upstream wire formats portal speaks."""

    OPENAI = "openai"
    AZURE = "azure"
    VLLM = "vllm"
    OLLAMA = "ollama"
    ANTHROPIC = "anthropic"
    GEMINI = "gemini"
    BEDROCK = "bedrock"
    MOCK = "mock"


class Model(UUIDPrimaryKey, TimestampMixin, Base):
    """A public model name clients ask for; ``fallbacks`` are other public names tried in order."""

    __tablename__ = "models"

    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    mode: Mapped[str] = mapped_column(String(16), default="chat")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    fallbacks: Mapped[list[str]] = mapped_column(JsonB, default=list)
    source: Mapped[str] = mapped_column(String(16), default="db")
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JsonB, default=dict)


class Credential(UUIDPrimaryKey, TimestampMixin, Base):
    """A provider secret, encrypted at rest (Fernet); never returned by any API."""

    __tablename__ = "credentials"

    name: Mapped[str] = mapped_column(String(200), unique=True)
    provider: Mapped[str] = mapped_column(String(32))
    ciphertext: Mapped[bytes] = mapped_column(Blob)
    hint: Mapped[str] = mapped_column(String(16), default="")


class Deployment(UUIDPrimaryKey, TimestampMixin, Base):
    """One upstream that serves a public model.

    ``tenant_id`` set means a per-tenant override (the Bedrock seed's per-tenant inference profile):
    that tenant's requests use it instead of the shared deployments of the same model.
    Prices are USD per million tokens; ``None`` falls back to the shipped price table.
    """

    __tablename__ = "deployments"
    __table_args__ = (Index("ix_deployments_model_id_tenant_id", "model_id", "tenant_id"),)

    model_id: Mapped[uuid.UUID] = mapped_column(GUID, ForeignKey("models.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200), default="")
    provider: Mapped[str] = mapped_column(String(32))
    upstream_model: Mapped[str] = mapped_column(String(500))
    api_base: Mapped[str | None] = mapped_column(String(500), default=None)
    api_version: Mapped[str | None] = mapped_column(String(64), default=None)
    region: Mapped[str | None] = mapped_column(String(64), default=None)
    credential_id: Mapped[uuid.UUID | None] = mapped_column(
        GUID, ForeignKey("credentials.id", ondelete="SET NULL"), default=None
    )
    credential_ref: Mapped[str | None] = mapped_column(String(200), default=None)
    input_price_per_mtok: Mapped[Decimal | None] = mapped_column(Money, default=None)
    output_price_per_mtok: Mapped[Decimal | None] = mapped_column(Money, default=None)
    weight: Mapped[int] = mapped_column(Integer, default=1)
    timeout_s: Mapped[float] = mapped_column(Double, default=600.0)
    max_retries: Mapped[int] = mapped_column(Integer, default=2)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        GUID, ForeignKey("tenants.id", ondelete="CASCADE"), default=None
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    source: Mapped[str] = mapped_column(String(16), default="db")
    extra: Mapped[dict[str, Any]] = mapped_column(JsonB, default=dict)
