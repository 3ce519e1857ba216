"""Portal pages of the grants domain (issue 7): ``/grants`` (grants of tenants, users and keys, filtered
by subject; add and delete), a live preview of the catalog models a pattern matches, and the
explainer "can this key (or a key of this tenant) use model Y, and why".

The explainer answers with the proxy's own check: the key's principal is loaded as the proxy loads it
(:func:`portal.proxy.principal.load_principal`) and asked ``access.denial(model, provider)`` for the
providers that serve the model. Tenant admins reach only their tenant's keys and users
(:mod:`portal.grants.scope`); another tenant's grants and subjects are 404.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Request, get, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotFoundException
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Template
from litestar.types import ControllerRouterHandler

from portal.api.deps import Db
from portal.auth.admin import AdminCaller
from portal.auth.person import page
from portal.auth.roles import Permission
from portal.catalog.registry import Catalog
from portal.db.models import ApiKey, Grant, SubjectType, Tenant, User
from portal.errors import DomainError, NotFoundError, ValidationFailedError
from portal.grants import service
from portal.grants.matcher import Access, LevelGrants, compile_access, pattern_matches
from portal.grants.scope import audit_tenant, check_read, check_write, subject_for_read, subject_for_write
from portal.grants.subjects import SubjectRow, resolve_subject
from portal.keys.service import get_key, list_keys
from portal.proxy.gateway import Gateway
from portal.proxy.principal import load_principal
from portal.tenants.service import get_tenant
from portal.web.forms import refused
from portal.web.pages import Answer, flash, page_caller, redirect, render

__all__ = ["PAGES"]

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
SUBJECT_TYPES = ("tenant", "user", "key")


@dataclass(frozen=True, slots=True)
class GrantRow:
    grant: Grant
    subject: str


@dataclass(frozen=True, slots=True)
class PreviewRow:
    name: str
    providers: list[str]
    matched: list[str]


def _catalog(request: Request[Any, Any, Any]) -> Catalog:
    gateway: Gateway = request.app.state.gateway
    return gateway.catalog


def _label(row: SubjectRow) -> str:
    if isinstance(row, Tenant):
        return row.slug
    if isinstance(row, User):
        return row.email or row.display_name
    return f"{row.alias} ({row.key_prefix}…)" if row.alias else f"{row.key_prefix}…"


async def _rows(db: Db, grants: list[Grant]) -> list[GrantRow]:
    rows: list[GrantRow] = []
    for grant in grants:
        try:
            subject = await resolve_subject(db, grant.subject_type, grant.subject_id)
            label = _label(subject.row)
        except NotFoundError:
            label = f"(deleted) {grant.subject_id}"
        rows.append(GrantRow(grant, label))
    return rows


def preview(catalog: Catalog, model_pattern: str, provider_pattern: str) -> list[PreviewRow]:
    """The catalog models (config and database) whose name matches the pattern on some provider."""
    rows: list[PreviewRow] = []
    for name in sorted(catalog.models):
        if not pattern_matches(model_pattern, name):
            continue
        entry = catalog.models[name]
        providers = sorted({d.provider for d in entry.deployments} | entry.providers_for(None))
        matched = [p for p in providers if pattern_matches(provider_pattern or "*", p)]
        if matched or not providers:
            rows.append(PreviewRow(name, providers, matched))
    return rows


async def _grants_page(
    request: Request[Any, Any, Any],
    db: Db,
    *,
    subject_type: str = "",
    subject: str = "",
    form: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    status_code: int = 200,
    refused_form: bool = False,
) -> Template:
    caller = await page_caller(request)
    filter_error: str | None = None
    ident: uuid.UUID | None = None
    if subject:
        try:
            ident = (await subject_for_read(db, caller, subject_type or "key", subject)).id
        except DomainError as exc:
            filter_error, status_code = exc.message, exc.status_code
    grants: list[Grant] = []
    if filter_error is None:
        grants = list(
            await service.list_grants(
                db,
                subject_type=subject_type if subject_type in SUBJECT_TYPES else None,
                subject_id=ident,
                tenant_id=caller.tenant_id if caller.tenant_scoped else None,
            )
        )
    form = form or {"subject_type": subject_type or "key", "subject": subject, "model_pattern": "*"}
    form.setdefault("provider_pattern", "*")
    context = {
        "grants": await _rows(db, grants),
        "subject_type": subject_type,
        "subject": subject,
        "filter_error": filter_error,
        "subject_types": SUBJECT_TYPES,
        "form": form,
        "matches": preview(_catalog(request), form.get("model_pattern") or "*", form["provider_pattern"]),
        "can_write": caller.can(Permission.GRANTS_WRITE),
        "tenant_scoped": caller.tenant_scoped,
        "error": None,
        "fields": {},
        **(extra or {}),
    }
    if refused_form:
        return await refused(
            request,
            "grants/grants.html",
            context,
            fragment="grants/_add_form.html",
            target="#grant-add-form",
            status_code=status_code,
        )
    return await render(
        request, "grants/grants.html", context, fragment="grants/_list.html", status_code=status_code
    )


async def _done(request: Request[Any, Any, Any], db: Db, message: str, url: str) -> Answer:
    """Commit the change, then flash ``message`` and go to ``url`` (the flash is written through another
    connection, which SQLite would block while this transaction holds its write lock)."""
    await db.commit()
    await flash(request, message)
    return redirect(request, url)


@get("/grants", name="grants:list", opt=page(Permission.GRANTS_READ))
async def grants_page(
    request: Request[Any, Any, Any],
    db: Db,
    subject_type: FromQuery[str] = "",
    subject: FromQuery[str] = "",
) -> Template:
    """Grants of tenants, users and keys, optionally of one subject."""
    return await _grants_page(request, db, subject_type=subject_type.strip(), subject=subject.strip())


@post("/grants", name="grants:add", opt=page(Permission.GRANTS_WRITE))
async def add_grant(request: Request[Any, Any, Any], db: Db, data: Form) -> Answer:
    """Add a grant (idempotent); errors inline."""
    caller = await page_caller(request)
    model_pattern = data.get("model_pattern", "").strip()
    provider_pattern = data.get("provider_pattern", "").strip() or "*"
    try:
        ref = data.get("subject", "").strip()
        if not ref:
            raise ValidationFailedError(
                "choose a subject", {"subject": "an id (a tenant also by slug, a user by email)"}
            )
        subject = await subject_for_write(db, caller, data.get("subject_type", ""), ref)
        await service.add_grant(
            db,
            caller.actor,
            subject_type=subject.type,
            subject_id=subject.id,
            model_pattern=model_pattern,
            provider_pattern=provider_pattern,
            tenant_id=audit_tenant(caller, subject),
        )
    except DomainError as exc:
        await db.rollback()
        fields = exc.fields if isinstance(exc, ValidationFailedError) else {}
        return await _grants_page(
            request,
            db,
            form=dict(data),
            extra={"error": exc.message, "fields": fields},
            status_code=exc.status_code,
            refused_form=True,
        )
    message = f"Granted {model_pattern} on {provider_pattern} to {subject.type} {_label(subject.row)}."
    return await _done(request, db, message, f"/grants?subject_type={subject.type}&subject={subject.id}")


@post("/grants/{grant_id:str}/delete", name="grants:delete", opt=page(Permission.GRANTS_WRITE))
async def delete_grant(request: Request[Any, Any, Any], db: Db, grant_id: FromPath[str]) -> Answer:
    """Remove a grant (404 for another tenant's)."""
    caller = await page_caller(request)
    try:
        grant = await service.get_grant(db, grant_id)
        if caller.tenant_scoped:
            check_write(caller, await resolve_subject(db, grant.subject_type, grant.subject_id))
        await service.delete_grant(
            db, caller.actor, grant, tenant_id=caller.tenant_id if caller.tenant_scoped else None
        )
    except NotFoundError as exc:
        raise NotFoundException(exc.message) from None
    except DomainError as exc:
        await db.rollback()
        return await _grants_page(request, db, extra={"error": exc.message}, status_code=exc.status_code)
    return await _done(
        request, db, f"Grant {grant.model_pattern} on {grant.provider_pattern} removed.", "/grants"
    )


@get("/grants/preview", name="grants:preview", opt=page(Permission.GRANTS_READ))
async def preview_page(
    request: Request[Any, Any, Any],
    model_pattern: FromQuery[str] = "*",
    provider_pattern: FromQuery[str] = "*",
) -> Template:
    """Which catalog models a pattern matches (the htmx live preview of the add form)."""
    model_pattern = model_pattern.strip() or "*"
    provider_pattern = provider_pattern.strip() or "*"
    errors = service.check_patterns(model_pattern, provider_pattern)
    matches = [] if errors else preview(_catalog(request), model_pattern, provider_pattern)
    context = {"matches": matches, "pattern_errors": errors, "model_pattern": model_pattern}
    return await render(request, "grants/preview.html", context, fragment="grants/_preview.html")


@dataclass(frozen=True, slots=True)
class Explanation:
    model: str
    who: str
    allowed: bool
    denied_by: str | None
    providers: list[tuple[str, str | None]]
    levels: list[tuple[str, str, list[tuple[str, str]]]]
    notes: list[str]


async def _find_key(db: Db, caller: AdminCaller, ref: str) -> ApiKey:
    """A key by id, secret or display prefix; 404 outside a tenant admin's tenant."""
    key: ApiKey | None
    try:
        key = await get_key(db, ref)
    except NotFoundError:
        scoped = caller.tenant_id if caller.tenant_scoped else None
        found = [
            k
            for k in await list_keys(db, tenant_id=scoped, search=ref, limit=5)
            if k.key_prefix.startswith(ref)
        ]
        if len(found) > 1:
            raise ValidationFailedError(
                "ambiguous key", {"key": f"{ref!r} starts several keys; give more"}
            ) from None
        key = found[0] if found else None
    if key is None:
        raise NotFoundError(f"key {ref} does not exist")
    caller.check_visible(key.tenant_id, f"key {ref}")
    return key


def _answer(
    access: Access, catalog: Catalog, tenant_id: uuid.UUID | None, model: str
) -> tuple[bool, str | None, list[tuple[str, str | None]]]:
    """As the proxy's router: allowed when some provider serving the model is allowed."""
    entry = catalog.get(model)
    if entry is None:
        raise ValidationFailedError("unknown model", {"model": f"{model!r} is not in the catalog"})
    providers = sorted(entry.providers_for(tenant_id)) or [""]
    denials = [(p, access.denial(model, p)) for p in providers]
    allowed = any(d is None for _, d in denials)
    denied_by = None if allowed else next(d for _, d in denials if d is not None)
    return allowed, denied_by, denials


async def _grants_of(db: Db, kind: SubjectType, ident: uuid.UUID) -> list[tuple[str, str]]:
    rows = await service.list_grants(db, subject_type=kind, subject_id=ident)
    return [(g.model_pattern, g.provider_pattern) for g in rows]


async def explain(
    db: Db, caller: AdminCaller, catalog: Catalog, *, key_ref: str, tenant_ref: str, model: str
) -> Explanation:
    """Whether the key (or a key of the tenant without grants of its own) may use ``model``, and why."""
    if not model:
        raise ValidationFailedError("choose a model", {"model": "a model name from the catalog"})
    notes: list[str] = []
    levels: list[tuple[str, str, list[tuple[str, str]]]] = []
    if key_ref:
        key = await _find_key(db, caller, key_ref)
        principal = await load_principal(db, key.key_hash)
        if principal is None:
            raise NotFoundError(f"key {key_ref} does not exist")
        access, tenant_id, who = principal.access, principal.tenant_id, f"key {_label(key)}"
        if principal.tenant_id is not None:
            tenant = await get_tenant(db, principal.tenant_id)
            levels.append(("tenant", tenant.slug, await _grants_of(db, SubjectType.TENANT, tenant.id)))
        if principal.user_id is not None:
            user = await db.get(User, principal.user_id)
            label = _label(user) if user is not None else str(principal.user_id)
            levels.append(("user", label, await _grants_of(db, SubjectType.USER, principal.user_id)))
        levels.append(("key", _label(key), await _grants_of(db, SubjectType.KEY, key.id)))
        if key.status != "active":
            notes.append(f"The key is {key.status}: the proxy refuses it whatever its grants.")
        if not principal.tenant_active:
            notes.append("The key's tenant is suspended: the proxy refuses its keys.")
    elif tenant_ref:
        try:
            tenant = await get_tenant(db, tenant_ref)
        except NotFoundError:
            raise NotFoundError(f"tenant {tenant_ref} does not exist") from None
        check_read(caller, await resolve_subject(db, SubjectType.TENANT, tenant.id))
        tenant_grants = await _grants_of(db, SubjectType.TENANT, tenant.id)
        access = compile_access([LevelGrants("tenant", tuple(tenant_grants)), None, LevelGrants("key", ())])
        tenant_id, who = tenant.id, f"a key of tenant {tenant.slug} (no grants of its own)"
        levels.append(("tenant", tenant.slug, tenant_grants))
    else:
        raise ValidationFailedError("choose a key or a tenant", {"key": "a key id or prefix, or a tenant"})
    allowed, denied_by, providers = _answer(access, catalog, tenant_id, model)
    return Explanation(model, who, allowed, denied_by, providers, levels, notes)


@get("/grants/explain", name="grants:explain", opt=page(Permission.GRANTS_READ))
async def explain_page(
    request: Request[Any, Any, Any],
    db: Db,
    key: FromQuery[str] = "",
    tenant: FromQuery[str] = "",
    model: FromQuery[str] = "",
) -> Template:
    """ "Can X use model Y, and why": the proxy's own grant check, level by level."""
    caller = await page_caller(request)
    catalog = _catalog(request)
    context: dict[str, Any] = {
        "key": key.strip(),
        "tenant": tenant.strip(),
        "model": model.strip(),
        "models": sorted(catalog.models),
        "answer": None,
        "error": None,
        "fields": {},
    }
    status_code = 200
    if key.strip() or tenant.strip() or model.strip():
        try:
            context["answer"] = await explain(
                db, caller, catalog, key_ref=key.strip(), tenant_ref=tenant.strip(), model=model.strip()
            )
        except DomainError as exc:
            context["error"] = exc.message
            context["fields"] = exc.fields if isinstance(exc, ValidationFailedError) else {}
            status_code = exc.status_code
    return await render(
        request, "grants/explain.html", context, fragment="grants/_answer.html", status_code=status_code
    )


PAGES: list[ControllerRouterHandler] = [grants_page, add_grant, preview_page, explain_page, delete_grant]
