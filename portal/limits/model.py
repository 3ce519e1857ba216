"""What the limiter works with: per-principal plans (built once, cached), admissions and tickets.

Units: money in integer nano-dollars (1e-9 USD; Redis Lua numbers are doubles, exact to 2**53, so a
single period counter holds up to ~9 million USD), tokens as integers.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal

__all__ = [
    "NANO",
    "Admission",
    "BudgetSpec",
    "LimitPlan",
    "RateSpec",
    "Ticket",
    "Window",
    "from_nano",
    "to_nano",
]

NANO = Decimal(1_000_000_000)


def to_nano(amount: Decimal) -> int:
    """USD -> nano-dollars, rounded up (a limiter never under-counts money)."""
    return int((amount * NANO).to_integral_value(rounding=ROUND_CEILING))


def from_nano(value: int) -> Decimal:
    return Decimal(value) / NANO


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """One budget of a subject: ``amount`` per ``period`` in nano-dollars (``usd``) or tokens."""

    id: str
    level: str
    kind: str
    amount: int
    period: str | None
    alignment: str
    anchor: dt.datetime | None
    soft_threshold: float | None = None
    seed_used: int = 0
    seed_start: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class RateSpec:
    """Per-minute and concurrency limits of one subject (``None`` = unlimited)."""

    level: str
    subject: str
    rpm: int | None = None
    tpm: int | None = None
    parallel: int | None = None


@dataclass(frozen=True, slots=True)
class LimitPlan:
    """Everything to enforce for one principal, most specific level first."""

    budgets: tuple[BudgetSpec, ...] = ()
    rates: tuple[RateSpec, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.budgets and not self.rates


@dataclass(frozen=True, slots=True)
class Window:
    """A budget's counter for the current period."""

    spec: BudgetSpec
    key: str
    start: dt.datetime | None
    end: dt.datetime | None

    def expires_ms(self) -> int:
        """When the counter may be forgotten: a day after its period ends (or never)."""
        if self.end is None:
            return 0
        return int((self.end + dt.timedelta(days=1)).timestamp() * 1000)

    def seed(self) -> int:
        """Usage already recorded in the database for this window (after a restart or Redis loss)."""
        if self.start is None:
            return self.spec.seed_used
        started = self.spec.seed_start
        return self.spec.seed_used if started is not None and started >= self.start else 0


@dataclass(slots=True)
class Ticket:
    """An admitted call's reservations, to be settled exactly once."""

    request_id: str
    windows: list[tuple[Window, int]]
    rates: list[RateSpec]
    minute: int
    estimated_tokens: int
    estimated_cost: int
    settled: bool = False


@dataclass(slots=True)
class Admission:
    """The limiter's answer. ``denied`` names what refused (``budget``, ``quota``, ``rpm``, ``tpm``,
    ``parallel``); ``headers`` are the OpenAI ``x-ratelimit-*`` values for the tightest level."""

    ticket: Ticket | None
    denied: str | None = None
    level: str | None = None
    detail: str = ""
    retry_after: float | None = None
    headers: dict[str, str] = field(default_factory=dict)


def minute_of(now: dt.datetime) -> int:
    return math.floor(now.timestamp() / 60)
