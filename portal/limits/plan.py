"""Building a principal's :class:`LimitPlan` from its key, user, tenant and their budgets (on cache fill)."""

from __future__ import annotations

from collections.abc import Iterable

from portal.db.models import Budget
from portal.limits.model import BudgetSpec, LimitPlan, RateSpec, to_nano

__all__ = ["budget_spec", "build_plan"]

_LEVEL_ORDER = {"key": 0, "user": 1, "tenant": 2}


def budget_spec(budget: Budget) -> BudgetSpec:
    """The limiter's view of a budget row (money in nano-dollars)."""
    amount = to_nano(budget.amount) if budget.kind == "usd" else int(budget.amount)
    used = to_nano(budget.used) if budget.kind == "usd" else int(budget.used)
    return BudgetSpec(
        id=str(budget.id),
        level=budget.subject_type,
        kind=budget.kind,
        amount=amount,
        period=budget.period,
        alignment=budget.alignment,
        anchor=budget.period_started_at,
        soft_threshold=budget.soft_threshold,
        seed_used=used,
        seed_start=budget.period_started_at if budget.period is not None else None,
    )


def build_plan(budgets: Iterable[Budget], rates: Iterable[RateSpec]) -> LimitPlan:
    """Budgets and rate limits, most specific level first; unlimited rate levels are dropped."""
    specs = sorted((budget_spec(b) for b in budgets), key=lambda s: (_LEVEL_ORDER.get(s.level, 9), s.kind))
    limited = tuple(r for r in rates if r.rpm is not None or r.tpm is not None or r.parallel is not None)
    return LimitPlan(budgets=tuple(specs), rates=limited)
