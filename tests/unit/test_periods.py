"""Budget periods across month boundaries, durations and alignments (injected clock)."""

from __future__ import annotations

import datetime as dt

import pytest

from portal.limits.periods import InvalidPeriod, validate_period
from portal.limits.periods import current_window as window

UTC = dt.UTC


def t(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def test_lifetime_budget_has_no_window() -> None:
    assert window(None, "calendar", None, t(2026, 1, 1)) == (None, None)


def test_monthly_calendar_across_month_boundary() -> None:
    assert window("monthly", "calendar", None, t(2026, 1, 31, 23, 59, 59)) == (t(2026, 1, 1), t(2026, 2, 1))
    assert window("monthly", "calendar", None, t(2026, 2, 1, 0, 0, 0)) == (t(2026, 2, 1), t(2026, 3, 1))
    assert window("monthly", "calendar", None, t(2026, 12, 15)) == (t(2026, 12, 1), t(2027, 1, 1))


def test_daily_and_weekly_calendar() -> None:
    assert window("daily", "calendar", None, t(2026, 3, 4, 13)) == (t(2026, 3, 4), t(2026, 3, 5))
    monday = t(2026, 11, 16)
    assert window("weekly", "calendar", None, t(2026, 11, 22, 10)) == (monday, monday + dt.timedelta(7))


def test_30d_duration_counts_whole_durations_from_the_anchor() -> None:
    anchor = t(2026, 1, 10, 12)
    assert window("30d", "calendar", anchor, t(2026, 2, 9, 11)) == (anchor, t(2026, 2, 9, 12))
    assert window("30d", "calendar", anchor, t(2026, 2, 9, 12)) == (t(2026, 2, 9, 12), t(2026, 3, 11, 12))
    assert window("30d", "rolling", anchor, t(2026, 4, 1)) == (t(2026, 3, 11, 12), t(2026, 4, 10, 12))


def test_monthly_rolling_clamps_to_month_end() -> None:
    anchor = t(2026, 1, 31, 8)
    assert window("monthly", "rolling", anchor, t(2026, 2, 15)) == (anchor, t(2026, 2, 28, 8))
    assert window("monthly", "rolling", anchor, t(2026, 3, 1)) == (t(2026, 2, 28, 8), t(2026, 3, 31, 8))
    assert window("monthly", "rolling", anchor, t(2026, 4, 2)) == (t(2026, 3, 31, 8), t(2026, 4, 30, 8))


@pytest.mark.parametrize("period", ["daily", "weekly", "monthly", "30d", "12h", "90m", "2w", "45s"])
def test_valid_periods(period: str) -> None:
    assert validate_period(period) == period


@pytest.mark.parametrize("period", ["fortnightly", "0d", "d30", "-1d", "30x"])
def test_invalid_periods_are_explained(period: str) -> None:
    with pytest.raises(InvalidPeriod, match="unknown budget period"):
        validate_period(period)
