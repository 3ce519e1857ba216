"""The memory backend with an injected clock: periods roll over at the boundary, reservations,
settlement and rate windows (the Redis backend runs the same scenarios in the proxy tests)."""

from __future__ import annotations

import datetime as dt

from portal.limits.memory import MemoryBackend
from portal.limits.model import BudgetSpec, LimitPlan, RateSpec

UTC = dt.UTC


def plan(amount: int, period: str | None = "monthly", anchor: dt.datetime | None = None) -> LimitPlan:
    spec = BudgetSpec(
        id="b1", level="key", kind="usd", amount=amount, period=period, alignment="calendar", anchor=anchor
    )
    return LimitPlan(budgets=(spec,))


async def test_monthly_budget_rolls_over_exactly_at_the_month_boundary() -> None:
    backend = MemoryBackend()
    limits = plan(100)
    before = dt.datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC)
    first = await backend.admit(limits, "r1", 80, 0, before)
    assert first.ticket is not None
    await backend.settle(first.ticket, 80, 0)
    assert (await backend.admit(limits, "r2", 30, 0, before)).denied == "budget"
    after = dt.datetime(2026, 2, 1, 0, 0, 0, tzinfo=UTC)
    assert (await backend.admit(limits, "r3", 30, 0, after)).ticket is not None


async def test_30d_budget_resets_after_thirty_days_from_its_anchor() -> None:
    backend = MemoryBackend()
    anchor = dt.datetime(2026, 1, 10, tzinfo=UTC)
    limits = plan(100, "30d", anchor)
    admitted = await backend.admit(limits, "r1", 100, 0, anchor + dt.timedelta(days=29, hours=23))
    assert admitted.ticket is not None
    await backend.settle(admitted.ticket, 100, 0)
    assert (
        await backend.admit(limits, "r2", 1, 0, anchor + dt.timedelta(days=29, hours=23))
    ).denied == "budget"
    assert (await backend.admit(limits, "r3", 1, 0, anchor + dt.timedelta(days=30))).ticket is not None


async def test_reservations_count_until_settled_then_actual_cost() -> None:
    backend = MemoryBackend()
    limits = plan(100, None)
    now = dt.datetime(2026, 5, 1, tzinfo=UTC)
    one = await backend.admit(limits, "a", 60, 0, now)
    assert one.ticket is not None
    refused = await backend.admit(limits, "b", 60, 0, now)
    assert refused.denied == "budget"
    assert "reserved" in refused.detail
    [(_, before, after)] = await backend.settle(one.ticket, 10, 0)
    assert (before, after) == (0, 10)
    assert (await backend.admit(limits, "c", 60, 0, now)).ticket is not None


async def test_rate_window_and_parallel_slots() -> None:
    backend = MemoryBackend()
    limits = LimitPlan(rates=(RateSpec("key", "key:1", rpm=2, parallel=1),))
    now = dt.datetime(2026, 5, 1, 12, 0, 10, tzinfo=UTC)
    first = await backend.admit(limits, "a", 0, 5, now)
    assert first.ticket is not None
    assert (await backend.admit(limits, "b", 0, 5, now)).denied == "parallel"
    await backend.settle(first.ticket, 0, 5)
    second = await backend.admit(limits, "c", 0, 5, now)
    assert second.ticket is not None
    await backend.settle(second.ticket, 0, 5)
    assert (await backend.admit(limits, "d", 0, 5, now)).denied == "rpm"
    assert (await backend.admit(limits, "e", 0, 5, now + dt.timedelta(minutes=1))).ticket is not None


async def test_a_call_settled_after_a_reset_counts_only_itself() -> None:
    """Regression: a call admitted before an explicit reset and settled after it re-created the
    counter seeded with the usage from before the reset, so the fresh period started exhausted."""
    import dataclasses

    backend = MemoryBackend()
    now = dt.datetime(2026, 5, 3, tzinfo=UTC)
    stale = plan(100)
    stale = LimitPlan(budgets=(dataclasses.replace(stale.budgets[0], seed_used=90, seed_start=now),))
    admitted = await backend.admit(stale, "in-flight", 5, 0, now)
    assert admitted.ticket is not None
    await backend.reset("b1")
    await backend.settle(admitted.ticket, 5, 0)
    fresh = LimitPlan(budgets=(dataclasses.replace(stale.budgets[0], seed_used=0, seed_start=now),))
    usage = await backend.usage(fresh, now)
    assert usage["b1"] == (5, 0)
    assert (await backend.admit(fresh, "next", 90, 0, now)).ticket is not None
