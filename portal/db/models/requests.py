"""The request log (one row per proxied call) and the daily spend rollup the charts read."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from sqlalchemy import BigInteger, Boolean, Date, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.db.base import Base
from portal.db.types import GUID, DateTimeUTC, Double, Money, long_string

__all__ = ["RequestLog", "SpendDaily"]


class RequestLog(Base):
    """One proxied call: success, upstream error or denial. Written by the batched writer."""

    __tablename__ = "request_logs"
    __table_args__ = (
        Index("ix_request_logs_created_at", "created_at"),
        Index("ix_request_logs_tenant_id_created_at", "tenant_id", "created_at"),
        Index("ix_request_logs_api_key_id_created_at", "api_key_id", "created_at"),
        Index("ix_request_logs_model_created_at", "model", "created_at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTimeUTC(timezone=True))
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(GUID, default=None)
    user_id: Mapped[uuid.UUID | None] = mapped_column(GUID, default=None)
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(GUID, default=None)
    key_prefix: Mapped[str | None] = mapped_column(String(24), default=None)
    endpoint: Mapped[str] = mapped_column(String(32), default="chat.completions")
    model: Mapped[str | None] = mapped_column(String(200), default=None)
    deployment_id: Mapped[uuid.UUID | None] = mapped_column(GUID, default=None)
    provider: Mapped[str | None] = mapped_column(String(32), default=None)
    upstream_model: Mapped[str | None] = mapped_column(String(500), default=None)
    status_code: Mapped[int] = mapped_column(Integer)
    error_type: Mapped[str | None] = mapped_column(String(64), default=None)
    error_message: Mapped[str | None] = mapped_column(String(1000), default=None)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    total_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    latency_ms: Mapped[float] = mapped_column(Double, default=0.0)
    ttft_ms: Mapped[float | None] = mapped_column(Double, default=None)
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    client_ip: Mapped[str | None] = mapped_column(String(64), default=None)
    prompt: Mapped[str | None] = mapped_column(long_string(10000), default=None)
    response: Mapped[str | None] = mapped_column(long_string(10000), default=None)


class SpendDaily(Base):
    """Rollup per UTC day x tenant x user x key x model x provider; ``bucket`` is the unique upsert key."""

    __tablename__ = "spend_daily"
    __table_args__ = (
        Index("ix_spend_daily_day_tenant_id", "day", "tenant_id"),
        Index("ix_spend_daily_day_api_key_id", "day", "api_key_id"),
        Index("ix_spend_daily_day_model", "day", "model"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    bucket: Mapped[str] = mapped_column(String(64), unique=True)
    day: Mapped[dt.date] = mapped_column(Date)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(GUID, default=None)
    user_id: Mapped[uuid.UUID | None] = mapped_column(GUID, default=None)
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(GUID, default=None)
    model: Mapped[str] = mapped_column(String(200), default="")
    provider: Mapped[str] = mapped_column(String(32), default="")
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    cached_requests: Mapped[int] = mapped_column(BigInteger, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    latency_ms_sum: Mapped[float] = mapped_column(Double, default=0.0)
