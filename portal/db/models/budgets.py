"""Budgets: money budgets and token quotas per subject, with their period and reset time."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.db.base import Base, TimestampMixin, UUIDPrimaryKey
from portal.db.types import GUID, DateTimeUTC, Double, Money

__all__ = ["Budget", "BudgetKind", "BudgetPeriodAlignment", "SubjectType"]


class SubjectType(StrEnum):
    """Who a grant, budget or limit applies to."""

    TENANT = "tenant"
    USER = "user"
    KEY = "key"


class BudgetKind(StrEnum):
    USD = "usd"
    TOKENS = "tokens"


class BudgetPeriodAlignment(StrEnum):
    """``calendar``: periods start at midnight UTC / Monday / the 1st; ``rolling``: from the last reset."""

    CALENDAR = "calendar"
    ROLLING = "rolling"


class Budget(UUIDPrimaryKey, TimestampMixin, Base):
    """A limit of ``amount`` (USD or tokens) per period for one subject.

    ``period`` is ``daily``, ``weekly``, ``monthly``, a duration such as ``30d``/``12h``, or ``None``
    for a lifetime budget. ``used`` is the usage in the current period; ``reset_at`` is when it ends.
    Lifetime spend is never reset: it lives on the subject (``spend_total``) and in the request log.
    """

    __tablename__ = "budgets"
    __table_args__ = (
        UniqueConstraint("subject_type", "subject_id", "kind"),
        Index("ix_budgets_reset_at", "reset_at"),
    )

    subject_type: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[uuid.UUID] = mapped_column(GUID)
    kind: Mapped[str] = mapped_column(String(8), default=BudgetKind.USD)
    amount: Mapped[Decimal] = mapped_column(Money)
    period: Mapped[str | None] = mapped_column(String(16), default=None)
    alignment: Mapped[str] = mapped_column(String(16), default=BudgetPeriodAlignment.CALENDAR)
    used: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    period_started_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    reset_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    soft_threshold: Mapped[float | None] = mapped_column(Double, default=None)
    soft_notified_at: Mapped[dt.datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    webhook_url: Mapped[str | None] = mapped_column(String(500), default=None)
