"""Rate-limit and lifetime-spend columns shared by tenants, users and keys."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import BigInteger, Integer
from sqlalchemy.orm import Mapped, mapped_column

from portal.db.types import Money

__all__ = ["LimitColumns"]


class LimitColumns:
    """Per-subject rate limits (``None`` = unlimited) and the lifetime spend counter.

    Money budgets and token quotas live in :class:`portal.db.models.budgets.Budget`; these are the
    per-minute and concurrency limits, which have no period to reset.
    """

    rpm_limit: Mapped[int | None] = mapped_column(Integer, default=None, sort_order=500)
    tpm_limit: Mapped[int | None] = mapped_column(BigInteger, default=None, sort_order=501)
    max_parallel: Mapped[int | None] = mapped_column(Integer, default=None, sort_order=502)
    spend_total: Mapped[Decimal] = mapped_column(
        Money, default=Decimal(0), server_default="0", sort_order=503
    )
