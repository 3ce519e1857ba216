"""Budget rules in the database: create/replace, explicit reset, and periodic resets exactly once.

A period reset is a compare-and-set on ``reset_at`` (``UPDATE ... WHERE id = ? AND reset_at = ?``):
whichever instance gets there first resets it, every other one finds nothing to update, so each
period resets once however many instances run. A reset sets the period's ``used`` to 0; lifetime
spend (``spend_total`` on the subject, the request log and the rollups) is never touched.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from portal import audit
from portal.audit.service import snapshot
from portal.db.models import Budget, BudgetKind, BudgetPeriodAlignment, SubjectType
from portal.errors import NotFoundError, ValidationFailedError
from portal.limits.periods import InvalidPeriod, current_window, validate_period
from portal.timeutil import utcnow

__all__ = ["reset_budget", "reset_due_budgets", "set_budget"]


def _begin_period(budget: Budget, moment: dt.datetime) -> None:
    """Start the period that contains ``moment`` afresh: nothing used, no threshold notified."""
    start, end = current_window(budget.period, budget.alignment, moment, moment)
    budget.period_started_at = start or moment
    budget.reset_at = end
    budget.used = Decimal(0)
    budget.soft_notified_at = None


async def set_budget(
    session: AsyncSession,
    actor: audit.Actor,
    *,
    subject_type: SubjectType,
    subject_id: uuid.UUID,
    amount: Decimal,
    kind: BudgetKind = BudgetKind.USD,
    period: str | None = None,
    alignment: BudgetPeriodAlignment = BudgetPeriodAlignment.CALENDAR,
    soft_threshold: float | None = None,
    webhook_url: str | None = None,
    tenant_id: uuid.UUID | None = None,
    now: dt.datetime | None = None,
) -> Budget:
    """Create or change the ``kind`` budget of a subject; takes effect at once (``budget.set`` audited).

    Changing the amount keeps the current period's usage; changing the period starts a new period.
    """
    fields: dict[str, str] = {}
    if amount < 0:
        fields["amount"] = "must not be negative"
    try:
        period = validate_period(period)
    except InvalidPeriod as exc:
        fields["period"] = str(exc)
    if soft_threshold is not None and not 0 < soft_threshold < 1:
        fields["soft_threshold"] = "a fraction between 0 and 1, e.g. 0.8"
    if webhook_url is not None and not webhook_url.startswith(("http://", "https://")):
        fields["webhook_url"] = "an http(s) URL"
    if fields:
        raise ValidationFailedError("invalid budget", fields)
    moment = now or utcnow()
    budget = await session.scalar(
        select(Budget).where(
            Budget.subject_type == subject_type, Budget.subject_id == subject_id, Budget.kind == kind
        )
    )
    before = snapshot(budget) if budget is not None else None
    if budget is None:
        budget = Budget(subject_type=subject_type, subject_id=subject_id, kind=kind, used=Decimal(0))
        session.add(budget)
    restart = budget.period != period or budget.alignment != alignment or budget.period_started_at is None
    budget.amount = amount
    budget.period = period
    budget.alignment = alignment
    budget.soft_threshold = soft_threshold
    budget.webhook_url = webhook_url
    if restart:
        _begin_period(budget, moment)
    await session.flush()
    await audit.record(
        session,
        actor,
        "budget.set",
        target_type="budget",
        target_id=budget.id,
        tenant_id=tenant_id,
        before=before,
        after=snapshot(budget),
    )
    return budget


async def reset_budget(
    session: AsyncSession, actor: audit.Actor, budget_id: uuid.UUID, *, now: dt.datetime | None = None
) -> Budget:
    """Start the current period afresh now (an operator's explicit reset); ``budget.reset`` audited.

    The caller also clears the live counters (``Limiter.backend.reset``) and invalidates cached
    principals, so the reset applies at once on every instance.
    """
    budget = await session.get(Budget, budget_id)
    if budget is None:
        raise NotFoundError(f"budget {budget_id} does not exist")
    before = snapshot(budget)
    _begin_period(budget, now or utcnow())
    await session.flush()
    await audit.record(
        session,
        actor,
        "budget.reset",
        target_type="budget",
        target_id=budget.id,
        before=before,
        after=snapshot(budget),
    )
    return budget


async def reset_due_budgets(session: AsyncSession, now: dt.datetime) -> list[uuid.UUID]:
    """Move every budget whose period ended into its current period, once (compare-and-set).

    Returns the ids this call reset (others may have been reset concurrently by another instance).
    """
    due = (
        await session.execute(
            select(
                Budget.id, Budget.period, Budget.alignment, Budget.period_started_at, Budget.reset_at
            ).where(Budget.reset_at.is_not(None), Budget.reset_at <= now)
        )
    ).all()
    done: list[uuid.UUID] = []
    for budget_id, period, alignment, anchor, old_reset in due:
        start, end = current_window(period, alignment, anchor, now)
        result = await session.execute(
            update(Budget)
            .where(Budget.id == budget_id, Budget.reset_at == old_reset)
            .values(used=Decimal(0), period_started_at=start, reset_at=end, soft_notified_at=None)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            done.append(budget_id)
            await audit.record(
                session,
                audit.SYSTEM,
                "budget.period_reset",
                target_type="budget",
                target_id=budget_id,
                before={"reset_at": old_reset},
                after={"period_started_at": start, "reset_at": end},
            )
    return done
