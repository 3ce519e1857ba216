"""Portable column types: exact money on every backend, UTC datetimes, JSON.

Money is exact everywhere. On PostgreSQL and MariaDB it is ``DECIMAL(28, 12)``; SQLite has no exact
decimal storage, so there it is a 64-bit integer of pico-dollars (1e-12 USD), which keeps ``SUM`` exact.
A single stored SQLite value therefore tops out at about 9.2 million USD; use PostgreSQL beyond that.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from advanced_alchemy.types import GUID, DateTimeUTC
from sqlalchemy import JSON, BigInteger, Dialect, Numeric
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = ["GUID", "MONEY_QUANTUM", "DateTimeUTC", "JsonB", "Money", "to_money"]

MONEY_SCALE = 12
MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)
_PICO = Decimal(10) ** MONEY_SCALE


JsonB = JSON().with_variant(postgresql.JSONB(), "postgresql")
"""Portable JSON: JSONB on PostgreSQL, JSON elsewhere (SQLite, MariaDB)."""


def to_money(value: Decimal | int | float | str) -> Decimal:
    """Round a number to the money quantum (12 decimal places, banker's rounding)."""
    if isinstance(value, float):
        value = repr(value)
    return Decimal(value).quantize(MONEY_QUANTUM, rounding=ROUND_HALF_EVEN)


class Money(TypeDecorator[Decimal]):
    """An exact amount of US dollars, as :class:`~decimal.Decimal` in Python."""

    impl = Numeric(28, MONEY_SCALE)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(28, MONEY_SCALE, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        amount = to_money(value)
        if dialect.name == "sqlite":
            return int(amount * _PICO)
        return amount

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return to_money(Decimal(int(value)) / _PICO)
        return to_money(value)
