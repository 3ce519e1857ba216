"""Portal pages of the tenants domain (issue 7): the tenant list (search, status filter, cursor
pagination, create form) and a tenant's detail page (facts, limits, budgets, members, keys, grants,
history) with its edit, suspend/resume and delete flows.

Handlers are thin: they parse the form, call the same services as ``/api/tenants`` (with the signed-in
person as an :class:`AdminCaller` of the tenant at hand) and render. Domain errors become inline form
errors (422/409) or the 404 page; another tenant's objects do not exist for a tenant member.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from litestar import Request, get, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Template
from litestar.types import ControllerRouterHandler
from sqlalchemy.ext.asyncio import AsyncSession

from portal.api.deps import Db
from portal.api.schemas import money
from portal.audit.queries import list_audit_events
from portal.auth.admin import AdminCaller
from portal.auth.person import Person, page
from portal.auth.roles import Permission
from portal.db.models import BudgetKind, MembershipRole, SubjectType, Tenant, TenantStatus
from portal.errors import DomainError, NotFoundError, ValidationFailedError
from portal.grants.scope import subject_for_write
from portal.grants.service import list_grants
from portal.keys import service as keys
from portal.limits import budgets
from portal.spend.pages import daily_chart
from portal.tenants import service
from portal.timeutil import utcnow
from portal.users import service as users
from portal.web.forms import refused
from portal.web.pages import Answer, flash, redirect, render, signed_in

__all__ = ["PAGES"]

FormData = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
PAGE_SIZE = 25
KEYS_SHOWN = 10
SPEND_DAYS = 30
LIMIT_FIELDS = ("rpm_limit", "tpm_limit", "max_parallel")
TEXT_FIELDS = ("slug", "name", "description")
_DETAIL_FORMS = {
    "budget": ("tenants/_budget_form.html", "#budget-form"),
    "members": ("tenants/_member_form.html", "#member-form"),
}


# --- helpers -----------------------------------------------------------------------------------------


def _parse_uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


def _tenant_form(data: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The tenant fields of a posted form, and the field errors found before the service runs."""
    values: dict[str, Any] = {name: (data.get(name) or "").strip() for name in TEXT_FIELDS}
    errors: dict[str, str] = {}
    if len(values["name"]) > 200:
        errors["name"] = "at most 200 characters"
    for name in LIMIT_FIELDS:
        raw = (data.get(name) or "").strip()
        if not raw:
            values[name] = None
            continue
        try:
            number = int(raw)
        except ValueError:
            errors[name] = "a whole number (empty: unlimited)"
            continue
        if not 1 <= number <= 10**12:
            errors[name] = "between 1 and 10^12 (empty: unlimited)"
        values[name] = number
    return values, errors


def _form_values(tenant: Tenant) -> dict[str, Any]:
    return {
        "slug": tenant.slug,
        "name": tenant.name,
        "description": tenant.description,
        **{name: getattr(tenant, name) for name in LIMIT_FIELDS},
    }


def _error_fields(exc: DomainError, default_field: str) -> dict[str, str]:
    if isinstance(exc, ValidationFailedError) and exc.fields:
        return dict(exc.fields)
    return {default_field: exc.message}


async def _tenant_for(
    db: AsyncSession, person: Person, slug: str, permission: Permission
) -> tuple[Tenant, AdminCaller]:
    """The tenant ``slug`` and the person as its caller: 404 when it is out of their reach, 403 when
    their role in it does not allow ``permission``."""
    try:
        tenant = await service.get_tenant_by_slug(db, slug)
    except NotFoundError as exc:
        raise NotFoundException(exc.message) from None
    caller = person.caller(tenant.id)
    if caller is None or not caller.sees(tenant.id):
        raise NotFoundException(f"tenant {slug!r} does not exist")
    if not caller.can(permission):
        raise PermissionDeniedException("your role in this tenant does not allow this")
    return tenant, caller


async def _list_context(
    request: Request[Any, Any, Any],
    db: AsyncSession,
    search: str | None,
    status: str | None,
    cursor: str | None,
) -> dict[str, Any]:
    person = await signed_in(request)
    status = status if status in {s.value for s in TenantStatus} else None
    search = (search or "").strip() or None
    if person.staff_role is not None:
        rows = list(
            await service.list_tenants(
                db, status=status, search=search, after=_parse_uuid(cursor), limit=PAGE_SIZE
            )
        )
    else:
        rows = []
        for membership in person.memberships:
            rows.extend(
                await service.list_tenants(db, only=membership.tenant_id, status=status, search=search)
            )
        rows.sort(key=lambda t: t.id)
        after = _parse_uuid(cursor)
        rows = [t for t in rows if after is None or t.id > after][: PAGE_SIZE + 1]
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    query = "&".join(f"{k}={v}" for k, v in (("search", search), ("status", status)) if v)
    next_url = None
    if more:
        next_url = f"/tenants?{query + '&' if query else ''}cursor={rows[-1].id}"
    return {
        "tenants": rows,
        "search": search or "",
        "status": status or "",
        "next_url": next_url,
        "first_url": f"/tenants?{query}" if cursor else None,
        "can_write": person.can(Permission.TENANTS_WRITE),
    }


async def _detail_context(db: AsyncSession, tenant: Tenant, caller: AdminCaller) -> dict[str, Any]:
    context: dict[str, Any] = {"tenant": tenant, "caller": caller}
    context["members"] = (
        await users.list_members(db, tenant.id) if caller.can(Permission.USERS_READ) else None
    )
    # everyone who sees the tenant sees its budgets and what is left of them (members: self-service)
    rows = await budgets.list_budgets(db, subject_type=SubjectType.TENANT, subject_id=tenant.id)
    context["budgets"] = {b.kind: b for b in rows}
    context["keys"] = (
        list(await keys.list_keys(db, tenant_id=tenant.id, admin=False, limit=KEYS_SHOWN))
        if caller.can(Permission.KEYS_READ)
        else None
    )
    if caller.can(Permission.SPEND_READ):
        end = utcnow().date()
        view, chart_json = await daily_chart(
            db, tenant_id=tenant.id, start=end - dt.timedelta(days=SPEND_DAYS - 1), end=end
        )
        context.update(spend=view, chart_json=chart_json, by_period=view.by_period, money=money)
    else:
        context["spend"] = None
    context["grants"] = (
        await list_grants(db, subject_type=SubjectType.TENANT, subject_id=tenant.id)
        if caller.can(Permission.GRANTS_READ)
        else None
    )
    context["history"] = (
        (await list_audit_events(db, target_type="tenant", target_id=str(tenant.id), limit=20))[:20]
        if caller.can(Permission.AUDIT_READ)
        else None
    )
    context["can_write"] = caller.can(Permission.TENANTS_WRITE)
    context["can_members"] = caller.can(Permission.USERS_WRITE)
    context["can_budgets"] = caller.can(Permission.BUDGETS_WRITE) and not caller.tenant_scoped
    return context


async def _detail(
    request: Request[Any, Any, Any],
    db: AsyncSession,
    tenant: Tenant,
    caller: AdminCaller,
    *,
    form: str | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 422,
) -> Template:
    """The detail page; with ``form`` (``budget`` or ``members``), that form refused with ``errors``
    (for htmx only the form, in place)."""
    context = await _detail_context(db, tenant, caller)
    if form is None:
        context.update(errors={}, form_values={})
        return await render(request, "tenants/detail.html", context)
    context.update(errors={form: errors or {}}, form_values={form: values or {}})
    fragment, target = _DETAIL_FORMS[form]
    return await refused(
        request, "tenants/detail.html", context, fragment=fragment, target=target, status_code=status_code
    )


async def _done(request: Request[Any, Any, Any], db: AsyncSession, message: str, url: str) -> Answer:
    """Commit the change, then flash ``message`` and go to ``url`` (the flash is written through
    another connection, which SQLite would block while this transaction holds its write lock)."""
    await db.commit()
    await flash(request, message)
    return redirect(request, url)


# --- list and create ---------------------------------------------------------------------------------


@get("/tenants", name="tenants:list", opt=page(Permission.TENANTS_READ))
async def tenant_list(
    request: Request[Any, Any, Any],
    db: Db,
    search: FromQuery[str | None] = None,
    status: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Template:
    """Tenants with a live search, a status filter and "Next" pages; the create form for operators."""
    context = await _list_context(request, db, search, status, cursor)
    context.update(values={}, errors={})
    return await render(request, "tenants/list.html", context, fragment="tenants/_table.html")


@post("/tenants", name="tenants:create", opt=page(Permission.TENANTS_WRITE), status_code=303)
async def tenant_create(request: Request[Any, Any, Any], db: Db, data: FormData) -> Answer:
    """Create a tenant; field errors (422) and a taken slug (409) are shown next to the field."""
    person = await signed_in(request)
    caller = person.caller()
    if caller is None or caller.tenant_scoped:
        raise PermissionDeniedException("only operators create tenants")
    values, errors = _tenant_form(data)
    status_code = 422
    if not errors:
        fields = dict(values)
        slug = fields.pop("slug")
        try:
            tenant = await service.create_tenant(db, caller.actor, slug=slug, **fields)
        except DomainError as exc:
            await db.rollback()
            errors = _error_fields(exc, "slug")
            status_code = exc.status_code
        else:
            return await _done(request, db, f"Tenant {tenant.slug} created.", f"/tenants/{tenant.slug}")
    context = await _list_context(request, db, None, None, None)
    context.update(values=values, errors=errors)
    return await refused(
        request,
        "tenants/list.html",
        context,
        fragment="tenants/_create_form.html",
        target="#tenant-create-form",
        status_code=status_code,
    )


# --- detail, edit, suspend, delete -------------------------------------------------------------------


@get("/tenants/{slug:str}", name="tenants:detail", opt=page(Permission.TENANTS_READ))
async def tenant_detail(request: Request[Any, Any, Any], db: Db, slug: FromPath[str]) -> Template:
    """A tenant: facts, limits, budgets, members, keys, grants and its history."""
    tenant, caller = await _tenant_for(db, await signed_in(request), slug, Permission.TENANTS_READ)
    return await _detail(request, db, tenant, caller)


@get("/tenants/{slug:str}/edit", name="tenants:edit", opt=page(Permission.TENANTS_WRITE))
async def tenant_edit(request: Request[Any, Any, Any], db: Db, slug: FromPath[str]) -> Template:
    """The edit form of a tenant."""
    tenant, _ = await _tenant_for(db, await signed_in(request), slug, Permission.TENANTS_WRITE)
    context = {"tenant": tenant, "values": _form_values(tenant), "errors": {}}
    return await render(request, "tenants/edit.html", context)


@post("/tenants/{slug:str}/edit", name="tenants:update", opt=page(Permission.TENANTS_WRITE), status_code=303)
async def tenant_update(
    request: Request[Any, Any, Any], db: Db, slug: FromPath[str], data: FormData
) -> Answer:
    """Save the edit form; errors are shown inline."""
    tenant, caller = await _tenant_for(db, await signed_in(request), slug, Permission.TENANTS_WRITE)
    values, errors = _tenant_form(data)
    status_code = 422
    if not values["name"] and "name" not in errors:
        errors["name"] = "must not be empty"
    if not errors:
        try:
            await service.update_tenant(db, caller.actor, tenant, values)
        except DomainError as exc:
            await db.rollback()
            errors = _error_fields(exc, "slug")
            status_code = exc.status_code
        else:
            return await _done(request, db, f"Tenant {tenant.slug} saved.", f"/tenants/{tenant.slug}")
        tenant = await service.get_tenant_by_slug(db, slug)
    context = {"tenant": tenant, "values": values, "errors": errors}
    return await refused(
        request,
        "tenants/edit.html",
        context,
        fragment="tenants/_edit_form.html",
        target="#tenant-edit-form",
        status_code=status_code,
    )


@get("/tenants/{slug:str}/status", name="tenants:status-confirm", opt=page(Permission.TENANTS_WRITE))
async def tenant_status_confirm(request: Request[Any, Any, Any], db: Db, slug: FromPath[str]) -> Template:
    """Confirm suspending (or resuming) a tenant."""
    tenant, _ = await _tenant_for(db, await signed_in(request), slug, Permission.TENANTS_WRITE)
    return await render(request, "tenants/confirm_status.html", {"tenant": tenant})


@post(
    "/tenants/{slug:str}/status", name="tenants:status", opt=page(Permission.TENANTS_WRITE), status_code=303
)
async def tenant_status(request: Request[Any, Any, Any], db: Db, slug: FromPath[str]) -> Answer:
    """Suspend an active tenant or resume a suspended one."""
    tenant, caller = await _tenant_for(db, await signed_in(request), slug, Permission.TENANTS_WRITE)
    target = TenantStatus.ACTIVE if tenant.status == TenantStatus.SUSPENDED else TenantStatus.SUSPENDED
    await service.update_tenant(db, caller.actor, tenant, {"status": target.value})
    done = "suspended" if target == TenantStatus.SUSPENDED else "resumed"
    return await _done(request, db, f"Tenant {tenant.slug} {done}.", f"/tenants/{tenant.slug}")


@get("/tenants/{slug:str}/delete", name="tenants:delete-confirm", opt=page(Permission.TENANTS_WRITE))
async def tenant_delete_confirm(request: Request[Any, Any, Any], db: Db, slug: FromPath[str]) -> Template:
    """Confirm deleting a tenant (its keys, members, grants and budgets go with it)."""
    tenant, _ = await _tenant_for(db, await signed_in(request), slug, Permission.TENANTS_WRITE)
    return await render(request, "tenants/confirm_delete.html", {"tenant": tenant})


@post(
    "/tenants/{slug:str}/delete", name="tenants:delete", opt=page(Permission.TENANTS_WRITE), status_code=303
)
async def tenant_delete(request: Request[Any, Any, Any], db: Db, slug: FromPath[str]) -> Answer:
    """Delete the tenant."""
    tenant, caller = await _tenant_for(db, await signed_in(request), slug, Permission.TENANTS_WRITE)
    await service.delete_tenant(db, caller.actor, tenant)
    return await _done(request, db, f"Tenant {slug} deleted.", "/tenants")


# --- members -----------------------------------------------------------------------------------------


@post(
    "/tenants/{slug:str}/members",
    name="tenants:member-put",
    opt=page(Permission.USERS_WRITE),
    status_code=303,
)
async def member_put(request: Request[Any, Any, Any], db: Db, slug: FromPath[str], data: FormData) -> Answer:
    """Add a member by email (or user id / external id) with a role, or change a member's role."""
    tenant, caller = await _tenant_for(db, await signed_in(request), slug, Permission.USERS_WRITE)
    ref = (data.get("user") or "").strip()
    try:
        if not ref:
            raise ValidationFailedError("user missing", {"user": "an email, user id or external id"})
        user = await users.get_user(db, ref)
        await users.add_member(
            db,
            caller.actor,
            tenant_id=tenant.id,
            user_id=user.id,
            role=MembershipRole(data.get("role") or "member"),
        )
    except ValueError:
        errors = {"role": "tenant_admin or member"}
        return await _detail(request, db, tenant, caller, form="members", errors=errors, values=data)
    except DomainError as exc:
        await db.rollback()
        tenant = await service.get_tenant_by_slug(db, slug)
        status_code = 422 if isinstance(exc, NotFoundError) else exc.status_code
        errors = _error_fields(exc, "user")
        return await _detail(
            request, db, tenant, caller, form="members", errors=errors, values=data, status_code=status_code
        )
    who = user.email or user.display_name
    message = f"{who} is now {data.get('role') or 'member'} of {slug}."
    return await _done(request, db, message, f"/tenants/{slug}#members")


@post(
    "/tenants/{slug:str}/members/{user_id:str}/remove",
    name="tenants:member-remove",
    opt=page(Permission.USERS_WRITE),
    status_code=303,
)
async def member_remove(
    request: Request[Any, Any, Any], db: Db, slug: FromPath[str], user_id: FromPath[str]
) -> Answer:
    """End a membership."""
    tenant, caller = await _tenant_for(db, await signed_in(request), slug, Permission.USERS_WRITE)
    ident = _parse_uuid(user_id)
    if ident is None:
        raise NotFoundException(f"user {user_id} is not a member of {slug}")
    try:
        await users.remove_member(db, caller.actor, tenant_id=tenant.id, user_id=ident)
    except NotFoundError as exc:
        raise NotFoundException(exc.message) from None
    return await _done(request, db, "Member removed.", f"/tenants/{slug}#members")


# --- budgets -----------------------------------------------------------------------------------------


@post(
    "/tenants/{slug:str}/budgets",
    name="tenants:budget-set",
    opt=page(Permission.BUDGETS_WRITE),
    status_code=303,
)
async def budget_set(request: Request[Any, Any, Any], db: Db, slug: FromPath[str], data: FormData) -> Answer:
    """Set or change the tenant's usd or tokens budget (amount and period)."""
    tenant, caller = await _tenant_for(db, await signed_in(request), slug, Permission.BUDGETS_WRITE)
    kind = data.get("kind") or ""
    try:
        try:
            amount = Decimal((data.get("amount") or "").strip())
        except InvalidOperation:
            raise ValidationFailedError("invalid amount", {"amount": "a number"}) from None
        if not amount.is_finite():
            raise ValidationFailedError("invalid amount", {"amount": "a number"})
        subject = await subject_for_write(db, caller, SubjectType.TENANT, tenant.id)
        await budgets.set_budget(
            db,
            caller.actor,
            subject_type=subject.type,
            subject_id=subject.id,
            amount=amount,
            kind=kind,
            period=(data.get("period") or "").strip() or None,
            tenant_id=tenant.id,
        )
    except DomainError as exc:
        await db.rollback()
        tenant = await service.get_tenant_by_slug(db, slug)
        return await _detail(
            request,
            db,
            tenant,
            caller,
            form="budget",
            errors=_error_fields(exc, "amount"),
            values=data,
            status_code=exc.status_code,
        )
    return await _done(
        request,
        db,
        f"{'USD' if kind == BudgetKind.USD else 'Token'} budget saved.",
        f"/tenants/{slug}#budgets",
    )


@post(
    "/tenants/{slug:str}/budgets/{kind:str}/reset",
    name="tenants:budget-reset",
    opt=page(Permission.BUDGETS_WRITE),
    status_code=303,
)
async def budget_reset(
    request: Request[Any, Any, Any], db: Db, slug: FromPath[str], kind: FromPath[str]
) -> Answer:
    """Start the budget's current period afresh."""
    tenant, caller = await _tenant_for(db, await signed_in(request), slug, Permission.BUDGETS_WRITE)
    rows = await budgets.list_budgets(db, subject_type=SubjectType.TENANT, subject_id=tenant.id)
    budget = next((b for b in rows if b.kind == kind), None)
    if budget is None:
        raise NotFoundException(f"tenant {slug} has no {kind} budget")
    try:
        await subject_for_write(db, caller, SubjectType.TENANT, tenant.id)
    except DomainError as exc:
        raise PermissionDeniedException(exc.message) from None
    await budgets.reset_budget(db, caller.actor, budget.id)
    return await _done(request, db, f"The {kind} budget starts afresh.", f"/tenants/{slug}#budgets")


PAGES: list[ControllerRouterHandler] = [
    tenant_list,
    tenant_create,
    tenant_detail,
    tenant_edit,
    tenant_update,
    tenant_status_confirm,
    tenant_status,
    tenant_delete_confirm,
    tenant_delete,
    member_put,
    member_remove,
    budget_set,
    budget_reset,
]
