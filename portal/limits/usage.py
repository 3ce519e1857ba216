"""Persisting budget usage: the batched writer adds each batch's cost and tokens to ``budgets.used``.

The limiter's live counters are authoritative while the process (or Redis) keeps them; ``used`` in
the database is their durable mirror, used to seed counters after a restart or a Redis loss. Only
records that fall inside a budget's current period count (``period_started_at <= t < reset_at``).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from decimal import Decimal

from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from portal.db.models import Budget
from portal.spend.records import CallRecord

__all__ = ["persist_budget_usage"]


async def persist_budget_usage(session: AsyncSession, records: list[CallRecord]) -> None:
    """Add the batch's cost and tokens to the matching budgets (one UPDATE per subject and kind)."""
    totals: dict[tuple[str, uuid.UUID], list[CallRecord]] = defaultdict(list)
    for record in records:
        if not record.budgeted or (record.cost == 0 and record.prompt_tokens + record.completion_tokens == 0):
            continue
        for level, subject in (
            ("key", record.api_key_id),
            ("user", record.user_id),
            ("tenant", record.tenant_id),
        ):
            if subject is not None:
                totals[(level, subject)].append(record)
    for (level, subject), group in sorted(totals.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        first = min(r.created_at for r in group)
        last = max(r.created_at for r in group)
        for kind, amount in (
            ("usd", sum((r.cost for r in group), Decimal(0))),
            ("tokens", Decimal(sum(r.prompt_tokens + r.completion_tokens for r in group))),
        ):
            if not amount:
                continue
            await session.execute(
                update(Budget)
                .where(
                    Budget.subject_type == level,
                    Budget.subject_id == subject,
                    Budget.kind == kind,
                    or_(Budget.period_started_at.is_(None), Budget.period_started_at <= first),
                    or_(Budget.reset_at.is_(None), Budget.reset_at > last),
                )
                .values(used=Budget.used + amount)
            )
