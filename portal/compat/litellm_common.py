"""Shared by the LiteLLM compatible routes: finding keys, users and teams within the caller's reach,
and applying LiteLLM's models, budgets and key settings through the grant, budget and key services."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from portal.auth.admin import AdminCaller
from portal.compat.litellm_schemas import UNSET, KeyRegenerate, KeyUpdate
from portal.compat.litellm_views import Views, expiry, grant_pairs, is_anchor
from portal.db.models import ApiKey, BudgetKind, SubjectType, Tenant, User
from portal.errors import NotFoundError, PermissionDeniedError, ValidationFailedError
from portal.grants.service import list_grants, replace_grants
from portal.keys import service as keys
from portal.limits.budgets import check_within_tenant_budget, delete_budget, set_budget
from portal.tenants import service as tenants
from portal.timeutil import utcnow
from portal.users import service as users

__all__ = [
    "BATCH",
    "Body",
    "change_budget",
    "every",
    "key_changes",
    "key_named",
    "key_settings",
    "no_user_settings",
    "page_bounds",
    "set_models",
    "set_subject_budget",
    "settle_anchor",
    "team_named",
    "user_named",
    "user_or_new",
]

Body = dict[str, Any]
R = TypeVar("R")
BATCH = 1000


# --- lookups ---------------------------------------------------------------------------------------


async def every(fetch: Callable[[Any], Awaitable[Sequence[R]]], cursor: Callable[[R], Any]) -> list[R]:
    """Every row of a cursor-paginated service list (``fetch(after)`` returns up to ``BATCH + 1`` rows)."""
    found: list[R] = []
    after = None
    while True:
        rows = await fetch(after)
        found.extend(rows[:BATCH])
        if len(rows) <= BATCH:
            return found
        after = cursor(rows[BATCH - 1])


async def key_named(
    db: AsyncSession, caller: AdminCaller, ref: str | uuid.UUID, *, write: bool = True
) -> ApiKey:
    """The key named by its secret, id or hash, within the caller's reach."""
    key = await keys.get_key(db, ref)
    caller.check_visible(key.tenant_id, f"key {key.id}")
    if write:
        keys.check_key_access(caller, key)
    return key


async def team_named(db: AsyncSession, caller: AdminCaller, ref: str) -> Tenant:
    """The tenant with id or slug ``ref``, within the caller's reach."""
    try:
        tenant = await tenants.get_tenant(db, ref)
    except NotFoundError:
        raise NotFoundError(f"Team not found, passed team_id={ref}") from None
    caller.check_visible(tenant.id, f"Team not found, passed team_id={ref}")
    return tenant


async def user_named(db: AsyncSession, caller: AdminCaller, ref: str) -> User:
    """The user with LiteLLM ``user_id`` (or email, or portal id) ``ref``, within the caller's reach."""
    try:
        user = await users.get_user(db, ref)
        await users.check_user_visible(db, caller, user)
    except NotFoundError:
        raise NotFoundError(f"User not found, passed user_id={ref}") from None
    return user


async def user_or_new(
    db: AsyncSession, caller: AdminCaller, user_id: str | None, email: str | None = None
) -> User:
    """The user a key or a team membership names; created when unknown, as LiteLLM does."""
    ref = user_id or email
    if not ref:
        raise ValidationFailedError("user required", {"user_id": "give user_id or user_email"})
    try:
        user = await users.get_user(db, ref)
    except NotFoundError:
        user = await users.create_user(
            db, caller.actor, email=email, external_id=user_id or str(uuid.uuid4())
        )
        if caller.tenant_scoped and caller.tenant_id is not None:
            await users.add_member(db, caller.actor, tenant_id=caller.tenant_id, user_id=user.id)
        else:  # a LiteLLM user without models may use every model
            await set_models(db, caller, SubjectType.USER, user.id, [], anchor=True)
        return user
    await users.check_user_visible(db, caller, user)
    return user


def no_user_settings(caller: AdminCaller, fields: dict[str, Any]) -> None:
    """403 when a tenant admin sets user-level budgets, models, limits (they reach beyond its tenant)."""
    given = [name for name, value in fields.items() if value is not None and value is not UNSET]
    if caller.tenant_scoped and given:
        raise PermissionDeniedError(
            f"a tenant admin key may not set a user's {', '.join(given)} (they apply in every tenant)"
        )


# --- settings shared by keys, users and teams --------------------------------------------------------


async def set_models(
    db: AsyncSession,
    caller: AdminCaller,
    subject_type: SubjectType,
    subject_id: uuid.UUID,
    models: list[str],
    *,
    anchor: bool,
    tenant_id: uuid.UUID | None = None,
) -> None:
    await replace_grants(
        db,
        caller.actor,
        subject_type=subject_type,
        subject_id=subject_id,
        pairs=grant_pairs(models, anchor=anchor),
        tenant_id=tenant_id,
    )


async def set_subject_budget(
    db: AsyncSession,
    caller: AdminCaller,
    subject_type: SubjectType,
    subject_id: uuid.UUID,
    amount: Decimal,
    period: str | None,
    *,
    tenant_id: uuid.UUID | None = None,
) -> None:
    if caller.tenant_scoped and tenant_id is not None:
        await check_within_tenant_budget(db, tenant_id, BudgetKind.USD, amount)
    await set_budget(
        db,
        caller.actor,
        subject_type=subject_type,
        subject_id=subject_id,
        amount=amount,
        period=period or None,
        tenant_id=tenant_id,
    )


async def change_budget(
    db: AsyncSession,
    caller: AdminCaller,
    subject_type: SubjectType,
    subject_id: uuid.UUID,
    max_budget: Any,
    budget_duration: Any,
    *,
    tenant_id: uuid.UUID | None = None,
) -> None:
    """Apply an update's ``max_budget`` / ``budget_duration``: absent = unchanged, a null budget removes
    it, a new amount keeps the period's usage, a new duration starts a new period."""
    if max_budget is UNSET and budget_duration is UNSET:
        return
    current = await Views(db, caller.sees).budget(subject_type, subject_id)
    if max_budget is None:
        if current is not None:
            await delete_budget(db, caller.actor, current)
        return
    amount = current.amount if max_budget is UNSET and current is not None else max_budget
    if amount is UNSET:
        return  # a duration without any budget: nothing to reset
    period = (current.period if current else None) if budget_duration is UNSET else budget_duration
    await set_subject_budget(db, caller, subject_type, subject_id, amount, period, tenant_id=tenant_id)


async def settle_anchor(db: AsyncSession, caller: AdminCaller, key: ApiKey, was_anchor: bool) -> None:
    """Keep "every model" meaning every model when a key gains or loses its user."""
    if was_anchor == is_anchor(key):
        return
    pairs = [
        (g.model_pattern, g.provider_pattern)
        for g in await list_grants(db, subject_type="key", subject_id=key.id)
    ]
    if is_anchor(key) and not pairs:
        await set_models(db, caller, SubjectType.KEY, key.id, [], anchor=True, tenant_id=key.tenant_id)
    elif not is_anchor(key) and pairs == [("*", "*")]:
        await set_models(db, caller, SubjectType.KEY, key.id, [], anchor=False, tenant_id=key.tenant_id)


async def key_settings(
    db: AsyncSession, caller: AdminCaller, key: ApiKey, data: KeyUpdate | KeyRegenerate
) -> None:
    """The update fields of ``/key/update`` and ``/key/regenerate`` that are not columns of the key."""
    if data.models is not UNSET:
        await set_models(
            db,
            caller,
            SubjectType.KEY,
            key.id,
            data.models or [],
            anchor=is_anchor(key),
            tenant_id=key.tenant_id,
        )
    await change_budget(
        db, caller, SubjectType.KEY, key.id, data.max_budget, data.budget_duration, tenant_id=key.tenant_id
    )


def key_changes(data: KeyUpdate | KeyRegenerate) -> dict[str, Any]:
    """The key columns an update body changes."""
    names = {
        "key_alias": "alias",
        "metadata": "metadata",
        "tpm_limit": "tpm_limit",
        "rpm_limit": "rpm_limit",
        "max_parallel_requests": "max_parallel",
    }
    changes = {
        column: getattr(data, field) for field, column in names.items() if getattr(data, field) is not UNSET
    }
    if data.duration is not UNSET:
        changes["expires_at"] = expiry(data.duration, utcnow())
    return changes


def page_bounds(page: int, size: int, most: int, name: str) -> None:
    if page < 1:
        raise ValidationFailedError("invalid page", {"page": "1 or more"})
    if not 1 <= size <= most:
        raise ValidationFailedError(f"invalid {name}", {name: f"between 1 and {most}"})
