"""Portable column types: exact money on every backend, UTC datetimes, JSON, floats, blobs, long text.

Money is exact everywhere. On PostgreSQL and MariaDB it is ``DECIMAL(28, 12)``; SQLite has no exact
decimal storage, so there it is a 64-bit integer of pico-dollars (1e-12 USD), which keeps ``SUM`` exact.
A single stored SQLite value therefore tops out at about 9.2 million USD; use PostgreSQL beyond that.

MariaDB/MySQL needs these types rather than SQLAlchemy's generic ones (use them in every model):

- :class:`DateTimeUTC`: ``DATETIME(6)`` (a bare ``DATETIME`` drops the microseconds) holding naive UTC,
  since MySQL's ``DATETIME`` has no time zone; read back as timezone-aware UTC on every backend.
- :class:`Double`: a float column (``FLOAT`` is 4 bytes on MySQL: 0.8 reads back as 0.800000011920929).
- :data:`Blob`: ``LONGBLOB`` on MySQL, whose ``BLOB`` stops at 64 KiB.
- :func:`long_string`: text of up to ``length`` characters; ``TEXT``/``MEDIUMTEXT`` on MySQL, where two
  long ``VARCHAR`` columns overflow the 65,535-byte row limit (4 bytes a character in utf8mb4).
- :data:`LongText`: unbounded text (``LONGTEXT`` on MySQL, whose ``TEXT`` stops at 64 KiB).
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from advanced_alchemy.types import GUID
from advanced_alchemy.types import DateTimeUTC as _AwareDateTime
from sqlalchemy import JSON, BigInteger, Dialect, Double, LargeBinary, Numeric, String, Text
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "GUID",
    "MAX_MONEY",
    "MONEY_QUANTUM",
    "MYSQL_DIALECTS",
    "Blob",
    "DateTimeUTC",
    "Double",
    "JsonB",
    "LongText",
    "Money",
    "is_mysql",
    "long_string",
    "to_money",
]

MONEY_SCALE = 12
MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)
_PICO = Decimal(10) ** MONEY_SCALE
MAX_MONEY = Decimal(10) ** (28 - MONEY_SCALE) - MONEY_QUANTUM
"""The largest amount ``DECIMAL(28, 12)`` holds (PostgreSQL, MariaDB): just under 10^16."""

MYSQL_DIALECTS = ("mysql", "mariadb")
"""SQLAlchemy's names for MySQL and MariaDB (``mysql+asyncmy`` URLs are ``mysql``)."""


def is_mysql(dialect: Dialect) -> bool:
    """Whether ``dialect`` is MySQL or MariaDB."""
    return dialect.name in MYSQL_DIALECTS


JsonB = JSON().with_variant(postgresql.JSONB(), "postgresql")
"""Portable JSON: JSONB on PostgreSQL, JSON elsewhere (SQLite; MariaDB, where it is a checked LONGTEXT)."""

Blob = LargeBinary().with_variant(mysql.LONGBLOB(), *MYSQL_DIALECTS)
"""Bytes of any size: ``BYTEA`` on PostgreSQL, ``BLOB`` on SQLite, ``LONGBLOB`` on MySQL."""

LongText = Text().with_variant(mysql.LONGTEXT(), *MYSQL_DIALECTS)
"""Text of any size: ``TEXT`` on PostgreSQL and SQLite, ``LONGTEXT`` on MySQL."""


def long_string(length: int) -> TypeEngine[str]:
    """``VARCHAR(length)``, but ``TEXT`` (or ``MEDIUMTEXT``) on MySQL, for columns over ~1,000 characters."""
    on_mysql = mysql.TEXT() if length * 4 <= 65_535 else mysql.MEDIUMTEXT()
    return String(length).with_variant(on_mysql, *MYSQL_DIALECTS)


class DateTimeUTC(_AwareDateTime):
    """A moment in UTC, timezone-aware in Python; ``DATETIME(6)`` of naive UTC on MySQL/MariaDB."""

    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if is_mysql(dialect):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return super().load_dialect_impl(dialect)

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        utc = super().process_bind_param(value, dialect)
        if utc is not None and is_mysql(dialect):
            return utc.replace(tzinfo=None)
        return utc


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
