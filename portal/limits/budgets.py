"""Budget rules in the database: create/replace, explicit reset, and periodic resets exactly once.

A period reset is a compare-and-set on ``reset_at`` (``UPDATE ... WHERE id = ? AND reset_at = ?``):
whichever instance gets there first resets it, every other one finds nothing to update, so each
period resets once however many instances run. A reset sets the period's ``used`` to 0; lifetime
spend (``spend_total`` on the subject, the request log and the rollups) is never touched.

Every change forgets cached principals (``note(everything=True)``) so the proxy enforces the new
budget on the next request; an explicit reset or a deletion also clears the budget's live counters
(``note(budget_resets=[id])``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import flag_modified

from portal import audit
from portal.audit.service import snapshot
from portal.db.effects import note
from portal.db.models import Budget, BudgetKind, BudgetPeriodAlignment, SubjectType
from portal.errors import NotFoundError, ValidationFailedError
from portal.grants.subjects import parse_subject_type, resolve_subject, subjects_of_tenant
from portal.limits.periods import InvalidPeriod, current_window, validate_period
from portal.timeutil import utcnow

__all__ = [
    "check_within_tenant_budget",
    "delete_budget",
    "get_budget",
    "list_budgets",
    "reset_budget",
    "reset_due_budgets",
    "set_budget",
]

# SQLite stores money as a 64-bit count of pico-units (see portal.db.types): about 9.2 million at most.
_SQLITE_MAX_AMOUNT = Decimal("9223372")


def _begin_period(budget: Budget, moment: dt.datetime) -> None:
    """Start the period that contains ``moment`` afresh: nothing used, no threshold notified."""
    start, end = current_window(budget.period, budget.alignment, moment, moment)
    budget.period_started_at = start or moment
    budget.reset_at = end
    budget.used = Decimal(0)
    budget.soft_notified_at = None
    # Write these even when the loaded values look unchanged: the spend writer may have raised
    # ``used`` since this row was read, and an UPDATE that left it out would keep that usage.
    for name in ("used", "period_started_at", "reset_at"):
        flag_modified(budget, name)


async def set_budget(
    session: AsyncSession,
    actor: audit.Actor,
    *,
    subject_type: SubjectType,
    subject_id: uuid.UUID,
    amount: Decimal,
    kind: BudgetKind | str = BudgetKind.USD,
    period: str | None = None,
    alignment: BudgetPeriodAlignment | str = BudgetPeriodAlignment.CALENDAR,
    soft_threshold: float | None = None,
    webhook_url: str | None = None,
    tenant_id: uuid.UUID | None = None,
    now: dt.datetime | None = None,
) -> Budget:
    """Create or change the ``kind`` budget of a subject; takes effect at once (``budget.set`` audited).

    Changing the amount keeps the current period's usage; changing the period starts a new period.
    """
    fields: dict[str, str] = {}
    try:
        kind = BudgetKind(kind)
    except ValueError:
        fields["kind"] = "usd or tokens"
    try:
        alignment = BudgetPeriodAlignment(alignment)
    except ValueError:
        fields["alignment"] = "calendar or rolling"
    if amount < 0:
        fields["amount"] = "must not be negative"
    elif kind == BudgetKind.TOKENS and amount != amount.to_integral_value():
        fields["amount"] = "a whole number of tokens"
    elif amount > _SQLITE_MAX_AMOUNT and session.get_bind().dialect.name == "sqlite":
        fields["amount"] = f"at most {_SQLITE_MAX_AMOUNT} on SQLite (PostgreSQL and MariaDB go higher)"
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
    subject = await resolve_subject(session, subject_type, subject_id)
    subject_type = subject.type
    if tenant_id is None:
        tenant_id = subject.home_tenant
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
    note(session, everything=True)
    return budget


async def _subject_tenant(session: AsyncSession, budget: Budget) -> uuid.UUID | None:
    try:
        return (await resolve_subject(session, budget.subject_type, budget.subject_id)).home_tenant
    except NotFoundError:
        return None


async def list_budgets(
    session: AsyncSession,
    *,
    subject_type: SubjectType | str | None = None,
    subject_id: uuid.UUID | None = None,
    tenant_id: uuid.UUID | None = None,
) -> Sequence[Budget]:
    """Budgets in creation order, optionally of one subject type / subject, or of one tenant's
    subjects (``tenant_id``: the tenant itself, its keys and its members)."""
    query = select(Budget).order_by(Budget.id)
    if subject_type is not None:
        query = query.where(Budget.subject_type == parse_subject_type(subject_type))
    if subject_id is not None:
        query = query.where(Budget.subject_id == subject_id)
    if tenant_id is not None:
        query = query.where(subjects_of_tenant(tenant_id, Budget.subject_type, Budget.subject_id))
    return (await session.scalars(query)).all()


async def get_budget(session: AsyncSession, budget_id: uuid.UUID | str) -> Budget:
    """The budget ``budget_id``, or :class:`NotFoundError`."""
    try:
        ident = budget_id if isinstance(budget_id, uuid.UUID) else uuid.UUID(budget_id)
    except ValueError:
        ident = None
    budget = await session.get(Budget, ident) if ident is not None else None
    if budget is None:
        raise NotFoundError(f"budget {budget_id!s} does not exist")
    return budget


async def delete_budget(session: AsyncSession, actor: audit.Actor, budget: Budget) -> None:
    """Remove ``budget`` and its live counters (``budget.deleted`` audited)."""
    before = snapshot(budget)
    tenant_id = await _subject_tenant(session, budget)
    await session.delete(budget)
    await session.flush()
    await audit.record(
        session,
        actor,
        "budget.deleted",
        target_type="budget",
        target_id=before["id"],
        tenant_id=tenant_id,
        before=before,
    )
    note(session, everything=True, budget_resets=[budget.id])


async def check_within_tenant_budget(
    session: AsyncSession, tenant_id: uuid.UUID, kind: BudgetKind | str, amount: Decimal
) -> None:
    """422 on ``amount`` when it exceeds the tenant's own ``kind`` budget (no tenant budget: any amount)."""
    cap = await session.scalar(
        select(Budget.amount).where(
            Budget.subject_type == SubjectType.TENANT, Budget.subject_id == tenant_id, Budget.kind == kind
        )
    )
    if cap is not None and amount > cap:
        raise ValidationFailedError(
            "budget above the tenant's",
            {"amount": f"at most the tenant's {kind} budget of {cap.normalize():f}"},
        )


async def reset_budget(
    session: AsyncSession, actor: audit.Actor, budget_id: uuid.UUID, *, now: dt.datetime | None = None
) -> Budget:
    """Start the current period afresh now (an operator's explicit reset); ``budget.reset`` audited.

    Notes ``budget_resets`` so that, after the commit, the live counters are cleared and cached
    principals forgotten: the reset applies at once on every instance.

    ``period_started_at`` becomes the reset moment, so usage of calls made before the reset that the
    batched writer records only afterwards does not count against the fresh period.
    """
    budget = await get_budget(session, budget_id)
    before = snapshot(budget)
    moment = now or utcnow()
    _begin_period(budget, moment)
    budget.period_started_at = moment
    await session.flush()
    await audit.record(
        session,
        actor,
        "budget.reset",
        target_type="budget",
        target_id=budget.id,
        tenant_id=await _subject_tenant(session, budget),
        before=before,
        after=snapshot(budget),
    )
    note(session, budget_resets=[budget.id])
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
