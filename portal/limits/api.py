"""``/api/budgets`` and ``/api/limits``: money budgets, token quotas and rate limits per subject.

Budget amounts travel as decimal strings for both kinds: USD (``"12.5"``) and tokens (``"100000"``,
always a whole number), so ``amount``, ``used`` and ``remaining`` have one type. ``used`` is the
durable usage of the current period (the batched writer adds each call within about a second).

A tenant admin manages the budgets and limits of its tenant's keys and users only, and within the
tenant's own: a budget above the tenant's budget of the same kind, or a limit above (or, being
unlimited, escaping) the tenant's limit, is refused with 422 naming the field.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated

import msgspec
from litestar import Controller, delete, get, post, put
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.types import ControllerRouterHandler
from sqlalchemy.ext.asyncio import AsyncSession

from portal.api.deps import Caller, Db
from portal.api.pagination import Page
from portal.api.schemas import Limit, MoneyStr, money, unset_fields
from portal.auth.admin import AdminCaller
from portal.auth.roles import Permission, need
from portal.db.models import Budget
from portal.grants.scope import (
    audit_tenant,
    check_read,
    check_write,
    list_filter,
    subject_for_read,
    subject_for_write,
)
from portal.grants.subjects import Subject, resolve_subject
from portal.limits import budgets as service
from portal.limits.subject_limits import check_within_tenant_limits, limits_of, set_limits

__all__ = [
    "ROUTES",
    "BudgetController",
    "BudgetIn",
    "BudgetOut",
    "LimitController",
    "LimitsIn",
    "LimitsOut",
    "budget_out",
]

Alignment = Annotated[str, msgspec.Meta(pattern="^(calendar|rolling)$")]


class BudgetIn(msgspec.Struct, forbid_unknown_fields=True):
    amount: MoneyStr
    period: Annotated[
        str | None, msgspec.Meta(description="daily, weekly, monthly, a duration like 30d; null: lifetime")
    ] = None
    alignment: Alignment = "calendar"
    soft_threshold: Annotated[float, msgspec.Meta(gt=0, lt=1)] | None = None
    webhook_url: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class BudgetOut(msgspec.Struct):
    id: uuid.UUID
    subject_type: str
    subject_id: uuid.UUID
    kind: str
    amount: str
    used: str
    remaining: str
    period: str | None
    alignment: str
    period_started_at: dt.datetime | None
    reset_at: dt.datetime | None
    soft_threshold: float | None
    soft_notified_at: dt.datetime | None
    webhook_url: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


def budget_out(budget: Budget) -> BudgetOut:
    return BudgetOut(
        id=budget.id,
        subject_type=budget.subject_type,
        subject_id=budget.subject_id,
        kind=budget.kind,
        amount=money(budget.amount),
        used=money(budget.used),
        remaining=money(max(budget.amount - budget.used, Decimal(0))),
        period=budget.period,
        alignment=budget.alignment,
        period_started_at=budget.period_started_at,
        reset_at=budget.reset_at,
        soft_threshold=budget.soft_threshold,
        soft_notified_at=budget.soft_notified_at,
        webhook_url=budget.webhook_url,
        created_at=budget.created_at,
        updated_at=budget.updated_at,
    )


async def _budget_for(db: AsyncSession, caller: AdminCaller, budget_id: str, *, write: bool) -> Budget:
    """The budget, if a tenant admin reaches it through a subject of its tenant (else 404/403)."""
    budget = await service.get_budget(db, budget_id)
    if caller.tenant_scoped:
        subject = await resolve_subject(db, budget.subject_type, budget.subject_id)
        (check_write if write else check_read)(caller, subject)
    return budget


class BudgetController(Controller):
    """Money budgets and token quotas of tenants, users and keys."""

    path = "/budgets"
    tags = ["budgets"]

    @get("/", opt=need(Permission.BUDGETS_READ), summary="List budgets")
    async def list_budgets(
        self,
        db: Db,
        caller: Caller,
        subject_type: Annotated[str | None, QueryParameter(description="tenant, user or key")] = None,
        subject_id: Annotated[
            str | None, QueryParameter(description="the subject (with subject_type)")
        ] = None,
    ) -> Page[BudgetOut]:
        ident = await list_filter(db, caller, subject_type, subject_id)
        rows = await service.list_budgets(
            db,
            subject_type=subject_type,
            subject_id=ident,
            tenant_id=caller.tenant_id if caller.tenant_scoped else None,
        )
        return Page(items=[budget_out(b) for b in rows])

    @get("/{budget_id:str}", opt=need(Permission.BUDGETS_READ), summary="Read a budget")
    async def get_budget(self, db: Db, caller: Caller, budget_id: FromPath[str]) -> BudgetOut:
        return budget_out(await _budget_for(db, caller, budget_id, write=False))

    @put(
        "/{subject_type:str}/{subject_id:str}/{kind:str}",
        opt=need(Permission.BUDGETS_WRITE),
        summary="Create or replace a subject's budget of one kind (usd or tokens)",
    )
    async def set_budget(
        self,
        db: Db,
        caller: Caller,
        subject_type: FromPath[str],
        subject_id: FromPath[str],
        kind: FromPath[str],
        data: JSONBody[BudgetIn],
    ) -> BudgetOut:
        subject = await subject_for_write(db, caller, subject_type, subject_id)
        amount = Decimal(data.amount)
        if caller.tenant_scoped and caller.tenant_id is not None:
            await service.check_within_tenant_budget(db, caller.tenant_id, kind, amount)
        budget = await service.set_budget(
            db,
            caller.actor,
            subject_type=subject.type,
            subject_id=subject.id,
            amount=amount,
            kind=kind,
            period=data.period,
            alignment=data.alignment,
            soft_threshold=data.soft_threshold,
            webhook_url=data.webhook_url,
            tenant_id=audit_tenant(caller, subject),
        )
        return budget_out(budget)

    @post(
        "/{budget_id:str}/reset",
        opt=need(Permission.BUDGETS_WRITE),
        status_code=200,
        summary="Reset a budget now: the current period starts afresh and live counters clear",
    )
    async def reset_budget(self, db: Db, caller: Caller, budget_id: FromPath[str]) -> BudgetOut:
        budget = await _budget_for(db, caller, budget_id, write=True)
        return budget_out(await service.reset_budget(db, caller.actor, budget.id))

    @delete("/{budget_id:str}", opt=need(Permission.BUDGETS_WRITE), summary="Delete a budget")
    async def delete_budget(self, db: Db, caller: Caller, budget_id: FromPath[str]) -> None:
        budget = await _budget_for(db, caller, budget_id, write=True)
        await service.delete_budget(db, caller.actor, budget)


class LimitsIn(msgspec.Struct, forbid_unknown_fields=True):
    """Fields left out stay as they are; ``null`` means unlimited."""

    rpm_limit: Limit | msgspec.UnsetType | None = msgspec.UNSET
    tpm_limit: Limit | msgspec.UnsetType | None = msgspec.UNSET
    max_parallel: Limit | msgspec.UnsetType | None = msgspec.UNSET


class LimitsOut(msgspec.Struct):
    subject_type: str
    subject_id: uuid.UUID
    rpm_limit: int | None
    tpm_limit: int | None
    max_parallel: int | None


def limits_out(subject: Subject) -> LimitsOut:
    values = limits_of(subject.row)
    return LimitsOut(
        subject_type=subject.type,
        subject_id=subject.id,
        rpm_limit=values["rpm_limit"],
        tpm_limit=values["tpm_limit"],
        max_parallel=values["max_parallel"],
    )


class LimitController(Controller):
    """Requests per minute, tokens per minute and parallel calls of a tenant, user or key."""

    path = "/limits"
    tags = ["limits"]

    @get("/{subject_type:str}/{subject_id:str}", opt=need(Permission.BUDGETS_READ), summary="Read limits")
    async def get_limits(
        self, db: Db, caller: Caller, subject_type: FromPath[str], subject_id: FromPath[str]
    ) -> LimitsOut:
        return limits_out(await subject_for_read(db, caller, subject_type, subject_id))

    @put(
        "/{subject_type:str}/{subject_id:str}",
        opt=need(Permission.BUDGETS_WRITE),
        summary="Set limits (fields left out unchanged, null = unlimited)",
    )
    async def set_limits(
        self,
        db: Db,
        caller: Caller,
        subject_type: FromPath[str],
        subject_id: FromPath[str],
        data: JSONBody[LimitsIn],
    ) -> LimitsOut:
        subject = await subject_for_write(db, caller, subject_type, subject_id)
        changes = unset_fields(data)
        if caller.tenant_scoped and caller.tenant_id is not None:
            await check_within_tenant_limits(db, caller.tenant_id, changes)
        await set_limits(
            db,
            caller.actor,
            subject_type=subject.type,
            subject_id=subject.id,
            changes=changes,
            tenant_id=audit_tenant(caller, subject),
        )
        return limits_out(subject)


ROUTES: list[ControllerRouterHandler] = [BudgetController, LimitController]
