"""Budget periods: what a period string means and when the current period started and ends.

``period`` is ``daily``, ``weekly``, ``monthly``, a duration (``30d``, ``12h``, ``90m``, ``45s``,
``2w``), or ``None`` (lifetime, never resets).

Alignment:

* ``calendar`` (default for daily/weekly/monthly): periods start at 00:00 UTC, on Mondays, or on
  the 1st of the month. A duration in calendar alignment counts from the budget's anchor
  (``period_started_at``), in whole durations.
* ``rolling``: a period starts at the anchor and lasts exactly one period; the next starts when it
  ends (for ``monthly``: same day-of-month and time, clamped to the month's last day).

Every function takes ``now`` explicitly, so tests can move the clock across any boundary.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re

__all__ = ["InvalidPeriod", "current_window", "parse_period", "validate_period"]

_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_NAMED = {"daily": "1d", "weekly": "1w"}


class InvalidPeriod(ValueError):
    """A period string we do not understand."""


def parse_period(period: str) -> dt.timedelta | str:
    """``"monthly"`` -> ``"monthly"``; anything else -> its length as a timedelta."""
    text = period.strip().lower()
    if text in {"monthly", "month", "1mo", "30d-calendar"}:
        return "monthly"
    text = _NAMED.get(text, text)
    match = _DURATION.match(text)
    if match is None or int(match.group(1)) <= 0:
        raise InvalidPeriod(
            f"unknown budget period {period!r}: use daily, weekly, monthly or a duration like 30d, 12h, 2w"
        )
    return dt.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def validate_period(period: str | None) -> str | None:
    """The canonical form of ``period`` (raises :class:`InvalidPeriod`)."""
    if period is None or period == "":
        return None
    parse_period(period)
    return period.strip().lower()


def _add_months(moment: dt.datetime, months: int) -> dt.datetime:
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _calendar_start(kind: dt.timedelta | str, now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == "monthly":
        start = midnight.replace(day=1)
        return start, _add_months(start, 1)
    if kind == dt.timedelta(days=1):
        return midnight, midnight + dt.timedelta(days=1)
    if kind == dt.timedelta(weeks=1):
        start = midnight - dt.timedelta(days=midnight.weekday())
        return start, start + dt.timedelta(weeks=1)
    return None


def current_window(
    period: str | None, alignment: str, anchor: dt.datetime | None, now: dt.datetime
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """(start, end) of the period containing ``now``; ``(None, None)`` for a lifetime budget.

    ``anchor`` is when the budget's first (or last explicitly reset) period began.
    """
    if period is None:
        return None, None
    kind = parse_period(period)
    if alignment == "calendar":
        window = _calendar_start(kind, now)
        if window is not None:
            return window
    base = anchor or now
    if kind == "monthly":
        if now < base:
            return base, _add_months(base, 1)
        months = (now.year - base.year) * 12 + (now.month - base.month)
        if _add_months(base, months) > now:
            months -= 1
        return _add_months(base, months), _add_months(base, months + 1)
    assert isinstance(kind, dt.timedelta)
    if now < base:
        return base, base + kind
    periods = (now - base) // kind
    start = base + kind * periods
    return start, start + kind
