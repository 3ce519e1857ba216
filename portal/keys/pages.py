"""Portal pages of the keys domain (issue 7): the key list with filters, creating a key (its secret shown
once), a key's detail page (block/unblock, revoke, rotate, edit limits, expiry and grants), its usage over
the last 30 days, and "try this key" (a test request through the local proxy).

Tenant members and tenant admins act only within their own tenants: another tenant's key answers 404.
Every rule is the domain services' (portal.keys.service, portal.grants.service); these handlers parse
the form, call the service and render. A new secret never travels in a URL: it waits in the person's
session for the one page view that shows it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, NoReturn

import httpx
from litestar import Request, get, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Template
from litestar.types import ControllerRouterHandler
from sqlalchemy.ext.asyncio import AsyncSession

from portal.api.deps import Db
from portal.auth.admin import AdminCaller
from portal.auth.person import Person, page
from portal.auth.roles import Permission
from portal.auth.sessions import SessionManager
from portal.db.models import ApiKey, KeyStatus, SubjectType
from portal.errors import DomainError, NotFoundError, PermissionDeniedError, ValidationFailedError
from portal.grants import service as grants
from portal.grants.scope import audit_tenant, subject_for_write
from portal.keys import service
from portal.keys.api import parse_duration
from portal.keys.secrets import hash_key
from portal.spend.queries import call_stats, spend_report
from portal.state import AppResources
from portal.tenants.service import get_tenant, list_tenants
from portal.timeutil import utcnow
from portal.web.forms import form_page, refused
from portal.web.pages import Answer, flash, is_htmx, page_caller, redirect, render, signed_in

__all__ = ["PAGES"]

FormData = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
PAGE_SIZE = 50
USAGE_DAYS = 30
SECRETS_KEY = "key_secrets"
GRACE_CHOICES = (
    (0, "none: the old secret stops now"),
    (3600, "1 hour"),
    (86400, "1 day"),
    (604800, "7 days"),
)
TRY_TIMEOUT_S = 60.0
_LIMIT_LABELS = {
    "rpm_limit": "Requests/min",
    "tpm_limit": "Tokens/min",
    "max_parallel": "In parallel",
}


def _fail(exc: DomainError) -> NoReturn:
    """A domain error that is not a form problem: the 404 or 403 page."""
    if isinstance(exc, NotFoundError):
        raise NotFoundException(exc.message) from None
    if isinstance(exc, PermissionDeniedError):
        raise PermissionDeniedException(exc.message) from None
    raise exc


def _form_error(exc: DomainError) -> tuple[str, dict[str, str], int]:
    """What a form shows for ``exc``: the message, field messages and the status code."""
    if isinstance(exc, NotFoundError | PermissionDeniedError):
        _fail(exc)
    fields = exc.fields if isinstance(exc, ValidationFailedError) else {}
    return exc.message, fields, exc.status_code


async def _caller_for_key(
    request: Request[Any, Any, Any], db: AsyncSession, key_id: str
) -> tuple[AdminCaller, ApiKey]:
    """The key and the person as a caller in its tenant; 404 outside their reach, 403 above their rights."""
    person = await signed_in(request)
    try:
        key = await service.get_key(db, key_id)
    except NotFoundError as exc:
        _fail(exc)
    caller = person.caller(key.tenant_id) or await page_caller(request)
    try:
        caller.check_visible(key.tenant_id, f"key {key.id}")
    except NotFoundError as exc:
        _fail(exc)
    return caller, key


def _writable(caller: AdminCaller, key: ApiKey) -> bool:
    if not caller.can(Permission.KEYS_WRITE):
        return False
    try:
        service.check_key_access(caller, key)
    except DomainError:
        return False
    return True


async def _tenant_choices(db: AsyncSession, person: Person) -> list[tuple[str, str]]:
    """(id, label) of the tenants this person may pick: all for staff, their memberships otherwise."""
    if person.staff_role is not None:
        rows = await list_tenants(db, limit=500)
        return [(str(t.id), f"{t.name} ({t.slug})") for t in rows]
    return [(str(m.tenant_id), f"{m.name} ({m.slug})") for m in person.memberships]


def _tenant_labels(choices: list[tuple[str, str]]) -> dict[str, str]:
    return dict(choices)


def _int_field(values: dict[str, str], name: str, errors: dict[str, str]) -> int | None:
    text = (values.get(name) or "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        errors[name] = "a whole number, or empty for no key-level limit"
        return None


def _expiry(text: str, errors: dict[str, str]) -> dt.datetime | None:
    """A duration (``30d``) from now, or a date/time (UTC); empty: no expiry."""
    text = text.strip()
    if not text:
        return None
    if text[-1:].isalpha() and text[:-1].isdigit():
        try:
            return utcnow() + parse_duration(text, "expires")
        except ValidationFailedError as exc:
            errors.update(exc.fields)
            return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        errors["expires"] = "a duration such as 30d or 12h, or a date such as 2030-01-31"
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _patterns(text: str, errors: dict[str, str]) -> list[tuple[str, str]]:
    """One grant per line: ``model-pattern`` or ``model-pattern provider-pattern``."""
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) > 2:
            errors["grants"] = f"line {number}: a model pattern and at most one provider pattern"
            continue
        pairs.append((parts[0], parts[1] if len(parts) == 2 else "*"))
    return pairs


def _grants_text(rows: Any) -> str:
    return "\n".join(
        g.model_pattern if g.provider_pattern == "*" else f"{g.model_pattern} {g.provider_pattern}"
        for g in rows
    )


def _expires_text(key: ApiKey) -> str:
    return key.expires_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M") if key.expires_at else ""


async def _stash_secret(request: Request[Any, Any, Any], key_id: uuid.UUID, secret: str) -> None:
    manager: SessionManager = request.app.state.session_manager
    state = await manager.load(request)
    if state is not None:
        state.data.setdefault(SECRETS_KEY, {})[str(key_id)] = secret
        await manager.save(state)


async def _take_secret(request: Request[Any, Any, Any], key_id: uuid.UUID) -> str | None:
    manager: SessionManager = request.app.state.session_manager
    state = await manager.load(request)
    if state is None or str(key_id) not in state.data.get(SECRETS_KEY, {}):
        return None
    secret: str = state.data[SECRETS_KEY].pop(str(key_id))
    await manager.save(state)
    return secret


# --- the list ------------------------------------------------------------------------------------------


@get("/keys", name="keys:list", opt=page(Permission.KEYS_READ))
async def key_list(
    request: Request[Any, Any, Any],
    db: Db,
    tenant: FromQuery[str | None] = None,
    status: FromQuery[str | None] = None,
    search: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
    limit: FromQuery[int] = PAGE_SIZE,
) -> Template:
    """Keys the person may see, filtered by tenant, status and alias/prefix; 'Next' pages on."""
    person = await signed_in(request)
    limit = max(1, min(limit, 200))
    error: str | None = None
    tenant_id: uuid.UUID | None = None
    if tenant:
        try:
            tenant_id = (await get_tenant(db, tenant)).id
        except NotFoundError as exc:
            error = exc.message
    caller = person.caller(tenant_id) if tenant_id else None
    if caller is None:
        caller = await page_caller(request)
        if tenant_id is not None and not caller.sees(tenant_id):
            error, tenant_id = f"tenant {tenant} does not exist", None
    after: uuid.UUID | None = None
    if cursor:
        try:
            after = uuid.UUID(cursor)
        except ValueError:
            error = "invalid cursor: use the Next link"
    statuses = [s.value for s in KeyStatus]
    rows = await service.list_keys(
        db,
        tenant_id=caller.scoped_tenant(tenant_id) if caller.tenant_scoped else tenant_id,
        status=status if status in statuses else None,
        search=(search or "").strip() or None,
        after=after,
        limit=limit,
    )
    keys = list(rows[:limit])
    choices = await _tenant_choices(db, person)
    filters = {"tenant": tenant or "", "status": status or "", "search": search or ""}
    context = {
        "keys": keys,
        "next_cursor": str(keys[-1].id) if len(rows) > limit else None,
        "filters": filters,
        "limit": limit,
        "statuses": statuses,
        "tenant_choices": choices,
        "tenant_labels": _tenant_labels(choices),
        "error": error,
        "can_write": person.can(Permission.KEYS_WRITE),
    }
    code = 422 if error and not is_htmx(request) else 200  # htmx swaps only 2xx answers
    return await render(request, "keys/list.html", context, fragment="keys/_table.html", status_code=code)


# --- creating a key ------------------------------------------------------------------------------------


async def _new_form(
    request: Request[Any, Any, Any],
    db: AsyncSession,
    values: dict[str, str],
    *,
    error: str | None = None,
    fields: dict[str, str] | None = None,
    status_code: int = 200,
) -> Template:
    person = await signed_in(request)
    choices = await _tenant_choices(db, person)
    if not values.get("tenant") and person.staff_role is None and choices:
        values = {**values, "tenant": choices[0][0]}
    context = {
        "values": values,
        "error": error,
        "fields": fields or {},
        "tenant_choices": choices,
        "staff": person.staff_role is not None,
        "limit_labels": _LIMIT_LABELS,
    }
    return await form_page(
        request,
        "keys/new.html",
        context,
        fragment="keys/_new_form.html",
        target="#key-new-form",
        is_refused=error is not None,
        status_code=status_code,
    )


@get("/keys/new", name="keys:new", opt=page(Permission.KEYS_WRITE))
async def key_new(request: Request[Any, Any, Any], db: Db, tenant: FromQuery[str | None] = None) -> Template:
    """The form for a new proxy key."""
    return await _new_form(request, db, {"tenant": tenant or "", "grants": "*"})


@post("/keys", name="keys:create", opt=page(Permission.KEYS_WRITE), status_code=303)
async def key_create(request: Request[Any, Any, Any], db: Db, data: FormData) -> Answer:
    """Create the key (and its grants); its secret is shown on the next page, once."""
    person = await signed_in(request)
    errors: dict[str, str] = {}
    tenant_id: uuid.UUID | None = None
    tenant_ref = (data.get("tenant") or "").strip()
    if tenant_ref:
        try:
            tenant_id = uuid.UUID(tenant_ref)
        except ValueError:
            errors["tenant"] = "pick a tenant from the list"
    if tenant_id is None and person.staff_role is None:
        errors["tenant"] = "pick one of your tenants"
    limits = {name: _int_field(data, name, errors) for name in _LIMIT_LABELS}
    expires_at = _expiry(data.get("expires") or "", errors)
    pairs = _patterns(data.get("grants") or "", errors)
    alias = (data.get("alias") or "").strip()[:200] or None
    if errors:
        return await _new_form(
            request, db, data, error="check the fields below", fields=errors, status_code=422
        )
    caller = person.caller(tenant_id) if tenant_id else await page_caller(request)
    if caller is None:
        return await _new_form(
            request,
            db,
            data,
            error="check the fields below",
            fields={"tenant": "not one of your tenants"},
            status_code=422,
        )
    try:
        service.check_key_role(caller, None)
        new = await service.create_key(
            db,
            caller.actor,
            tenant_id=caller.scoped_tenant(tenant_id),
            alias=alias,
            expires_at=expires_at,
            source="portal",
            rpm_limit=limits["rpm_limit"],
            tpm_limit=limits["tpm_limit"],
            max_parallel=limits["max_parallel"],
        )
        if pairs:
            subject = await subject_for_write(db, caller, SubjectType.KEY, new.key.id)
            await grants.replace_grants(
                db,
                caller.actor,
                subject_type=SubjectType.KEY,
                subject_id=new.key.id,
                pairs=pairs,
                tenant_id=audit_tenant(caller, subject),
            )
    except DomainError as exc:
        await db.rollback()
        message, fields, status = _form_error(exc)
        fields = {
            ("expires" if k == "expires_at" else k.split("[")[0].split(".")[0]): v for k, v in fields.items()
        }
        return await _new_form(request, db, data, error=message, fields=fields, status_code=status)
    await db.commit()  # the session store writes too: SQLite allows one writer at a time
    await _stash_secret(request, new.key.id, new.secret)
    return redirect(request, f"/keys/{new.key.id}/created")


@get("/keys/{key_id:str}/created", name="keys:created", opt=page(Permission.KEYS_READ))
async def key_created(request: Request[Any, Any, Any], db: Db, key_id: FromPath[str]) -> Template:
    """The new secret, this once (reloading shows that it is gone)."""
    _caller, key = await _caller_for_key(request, db, key_id)
    secret = await _take_secret(request, key.id)
    response = await render(request, "keys/created.html", {"key": key, "secret": secret})
    response.headers["Cache-Control"] = "no-store"
    return response


# --- one key -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DayBar:
    day: dt.date
    requests: int
    cost: Decimal
    height: float


async def _usage(db: AsyncSession, key: ApiKey) -> dict[str, Any]:
    """The key's call stats and spend by day over the last :data:`USAGE_DAYS` days."""
    today = utcnow().date()
    start = today - dt.timedelta(days=USAGE_DAYS - 1)
    stats = await call_stats(
        db, api_key_id=key.id, start=dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC)
    )
    rows = await spend_report(db, group_by=["day"], api_key_id=key.id, start=start, end=today)
    by_day = {row.day: row for row in rows}
    top = max((row.cost for row in rows), default=Decimal(0))
    top_requests = max((row.requests for row in rows), default=0)
    bars: list[DayBar] = []
    for offset in range(USAGE_DAYS):
        day = start + dt.timedelta(days=offset)
        row = by_day.get(day)
        cost = row.cost if row else Decimal(0)
        requests = row.requests if row else 0
        height = float(cost / top) if top > 0 else (requests / top_requests if top_requests else 0.0)
        bars.append(DayBar(day, requests, cost, height))
    return {"stats": stats, "bars": bars, "total_cost": sum((b.cost for b in bars), Decimal(0))}


async def _detail(
    request: Request[Any, Any, Any],
    db: AsyncSession,
    caller: AdminCaller,
    key: ApiKey,
    *,
    values: dict[str, str] | None = None,
    error: str | None = None,
    fields: dict[str, str] | None = None,
    status_code: int = 200,
    try_result: dict[str, Any] | None = None,
    edit_form: bool = False,
) -> Template:
    """The key's page; with ``edit_form``, its edit form refused (for htmx only that form, in place)."""
    edit_form = edit_form and key.status != KeyStatus.REVOKED  # a revoked key's page has no edit form
    grant_rows = await grants.list_grants(db, subject_type=SubjectType.KEY, subject_id=key.id)
    choices = await _tenant_choices(db, await signed_in(request))
    form = values or {
        "alias": key.alias or "",
        "expires": _expires_text(key),
        "grants": _grants_text(grant_rows),
        **{name: str(getattr(key, name) or "") for name in _LIMIT_LABELS},
    }
    context = {
        "key": key,
        "tenant_label": _tenant_labels(choices).get(str(key.tenant_id), str(key.tenant_id or "—")),
        "grants": grant_rows,
        "values": form,
        "error": None if edit_form else error,
        "edit_error": error if edit_form else None,
        "fields": fields or {},
        "can_write": _writable(caller, key),
        "revoked": key.status == KeyStatus.REVOKED,
        "grace_choices": GRACE_CHOICES,
        "limit_labels": _LIMIT_LABELS,
        "try": try_result or {},
        "now": utcnow(),
        **await _usage(db, key),
    }
    if edit_form:
        return await refused(
            request,
            "keys/detail.html",
            context,
            fragment="keys/_edit_form.html",
            target="#key-edit-form",
            status_code=status_code,
        )
    return await render(request, "keys/detail.html", context, status_code=status_code)


@get("/keys/{key_id:str}", name="keys:detail", opt=page(Permission.KEYS_READ))
async def key_detail(request: Request[Any, Any, Any], db: Db, key_id: FromPath[str]) -> Template:
    """A key's facts, limits, grants and usage, with its actions."""
    caller, key = await _caller_for_key(request, db, key_id)
    return await _detail(request, db, caller, key)


async def _for_write(
    request: Request[Any, Any, Any], db: AsyncSession, key_id: str
) -> tuple[AdminCaller, ApiKey]:
    caller, key = await _caller_for_key(request, db, key_id)
    try:
        service.check_key_access(caller, key)
    except DomainError as exc:
        _fail(exc)
    return caller, key


async def _status_change(request: Request[Any, Any, Any], db: AsyncSession, key_id: str, action: str) -> Any:
    caller, key = await _for_write(request, db, key_id)
    ident = key.id
    change = {"block": service.block_key, "unblock": service.unblock_key, "revoke": service.revoke_key}[
        action
    ]
    try:
        await change(db, caller.actor, key)
    except DomainError as exc:
        await db.rollback()
        message, fields, status = _form_error(exc)
        key = await service.get_key(db, ident)  # the rollback expired it
        return await _detail(request, db, caller, key, error=message, fields=fields, status_code=status)
    done = {"block": "blocked", "unblock": "unblocked", "revoke": "revoked"}[action]
    await db.commit()  # before the session store writes the flash
    await flash(request, f"Key {key.key_prefix} {done}.")
    return redirect(request, f"/keys/{key.id}")


@post("/keys/{key_id:str}/block", name="keys:block", opt=page(Permission.KEYS_WRITE), status_code=303)
async def key_block(request: Request[Any, Any, Any], db: Db, key_id: FromPath[str]) -> Answer:
    """Block the key (reversible): the proxy refuses it at once."""
    result: Answer = await _status_change(request, db, key_id, "block")
    return result


@post("/keys/{key_id:str}/unblock", name="keys:unblock", opt=page(Permission.KEYS_WRITE), status_code=303)
async def key_unblock(request: Request[Any, Any, Any], db: Db, key_id: FromPath[str]) -> Answer:
    """Make a blocked key active again."""
    result: Answer = await _status_change(request, db, key_id, "unblock")
    return result


@get("/keys/{key_id:str}/revoke", name="keys:revoke-confirm", opt=page(Permission.KEYS_WRITE))
async def key_revoke_confirm(request: Request[Any, Any, Any], db: Db, key_id: FromPath[str]) -> Template:
    """Ask before revoking: a revoked key is final."""
    _caller, key = await _for_write(request, db, key_id)
    return await render(request, "keys/revoke.html", {"key": key})


@post("/keys/{key_id:str}/revoke", name="keys:revoke", opt=page(Permission.KEYS_WRITE), status_code=303)
async def key_revoke(request: Request[Any, Any, Any], db: Db, key_id: FromPath[str]) -> Answer:
    """Revoke the key for good: the proxy refuses it at once."""
    result: Answer = await _status_change(request, db, key_id, "revoke")
    return result


@post("/keys/{key_id:str}/rotate", name="keys:rotate", opt=page(Permission.KEYS_WRITE), status_code=303)
async def key_rotate(
    request: Request[Any, Any, Any], db: Db, key_id: FromPath[str], data: FormData
) -> Answer:
    """A new secret for the key (shown once); the old one keeps working for the grace period."""
    caller, key = await _for_write(request, db, key_id)
    ident = key.id
    try:
        grace = int(data.get("grace_period_s") or 0)
    except ValueError:
        grace = -1
    if grace not in {seconds for seconds, _label in GRACE_CHOICES}:
        return await _detail(
            request,
            db,
            caller,
            key,
            error="pick a grace period from the list",
            fields={"grace_period_s": "pick one"},
            status_code=422,
        )
    try:
        new = await service.rotate_key(db, caller.actor, key, grace_s=grace)
    except DomainError as exc:
        await db.rollback()
        message, fields, status = _form_error(exc)
        key = await service.get_key(db, ident)  # the rollback expired it
        return await _detail(request, db, caller, key, error=message, fields=fields, status_code=status)
    await db.commit()  # the session store writes too: SQLite allows one writer at a time
    await _stash_secret(request, new.key.id, new.secret)
    return redirect(request, f"/keys/{new.key.id}/created")


@post("/keys/{key_id:str}/edit", name="keys:edit", opt=page(Permission.KEYS_WRITE), status_code=303)
async def key_edit(request: Request[Any, Any, Any], db: Db, key_id: FromPath[str], data: FormData) -> Answer:
    """Change the key's alias, expiry, limits and grants."""
    caller, key = await _for_write(request, db, key_id)
    ident = key.id
    errors: dict[str, str] = {}
    changes: dict[str, Any] = {name: _int_field(data, name, errors) for name in _LIMIT_LABELS}
    changes["alias"] = (data.get("alias") or "").strip()[:200] or None
    expires = (data.get("expires") or "").strip()
    if expires != _expires_text(key):
        changes["expires_at"] = _expiry(expires, errors)
    pairs = _patterns(data.get("grants") or "", errors)
    values = {name: data.get(name, "") for name in ("alias", "expires", "grants", *_LIMIT_LABELS)}
    if errors:
        return await _detail(
            request,
            db,
            caller,
            key,
            values=values,
            error="check the fields below",
            fields=errors,
            status_code=422,
            edit_form=True,
        )
    try:
        await service.update_key(db, caller.actor, key, changes)
        current = await grants.list_grants(db, subject_type=SubjectType.KEY, subject_id=key.id)
        if [(g.model_pattern, g.provider_pattern) for g in current] != pairs:
            subject = await subject_for_write(db, caller, SubjectType.KEY, key.id)
            await grants.replace_grants(
                db,
                caller.actor,
                subject_type=SubjectType.KEY,
                subject_id=key.id,
                pairs=pairs,
                tenant_id=audit_tenant(caller, subject),
            )
    except DomainError as exc:
        await db.rollback()
        message, fields, status = _form_error(exc)
        fields = {
            ("expires" if k == "expires_at" else k.split("[")[0].split(".")[0]): v for k, v in fields.items()
        }
        key = await service.get_key(db, ident)  # the rollback expired it
        return await _detail(
            request,
            db,
            caller,
            key,
            values=values,
            error=message,
            fields=fields,
            status_code=status,
            edit_form=True,
        )
    await db.commit()  # before the session store writes the flash
    await flash(request, f"Key {key.key_prefix} saved.")
    return redirect(request, f"/keys/{key.id}")


# --- try this key --------------------------------------------------------------------------------------


async def _call_proxy(
    request: Request[Any, Any, Any], secret: str, model: str, prompt: str
) -> dict[str, Any]:
    """One chat completion through this portal's own proxy with ``secret``: the answer, model and cost."""
    url = str(request.base_url).rstrip("/") + "/v1/chat/completions"
    body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    try:
        async with httpx.AsyncClient(timeout=TRY_TIMEOUT_S, trust_env=False) as client:
            response = await client.post(url, json=body, headers={"Authorization": f"Bearer {secret}"})
    except httpx.HTTPError as exc:
        return {"ok": False, "status": None, "message": f"the proxy did not answer: {type(exc).__name__}"}
    try:
        payload = response.json()
    except ValueError:
        payload = {}
    if response.status_code != 200:
        error = payload.get("error") if isinstance(payload, dict) else None
        message = error.get("message") if isinstance(error, dict) else response.text[:300]
        return {"ok": False, "status": response.status_code, "message": message or response.reason_phrase}
    try:
        answer = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        answer = ""
    return {
        "ok": True,
        "status": 200,
        "answer": answer,
        "model": payload.get("model", model),
        "cost": response.headers.get("x-portal-cost", "—"),
        "tokens": (payload.get("usage") or {}).get("total_tokens"),
    }


@post("/keys/{key_id:str}/try", name="keys:try", opt=page(Permission.KEYS_READ), status_code=200)
async def key_try(request: Request[Any, Any, Any], key_id: FromPath[str], data: FormData) -> Template:
    """Send the pasted secret and a prompt through the proxy and show the answer and its cost."""
    resources: AppResources = request.app.state.resources
    async with resources.sessions() as session:  # closed before the proxy call: it writes to this key
        _caller, key = await _caller_for_key(request, session, key_id)
    secret = (data.get("key") or "").strip()
    model = (data.get("model") or "").strip()
    prompt = (data.get("prompt") or "").strip()
    fields: dict[str, str] = {}
    if not secret:
        fields["key"] = "paste the key's secret"
    elif hash_key(secret) != key.key_hash:
        fields["key"] = f"this is not the secret of key {key.key_prefix}"
    if not model:
        fields["model"] = "name a model"
    if not prompt:
        fields["prompt"] = "write a prompt"
    if fields:
        result: dict[str, Any] = {
            "ok": False,
            "status": None,
            "message": "check the fields",
            "fields": fields,
        }
        status = 200 if is_htmx(request) else 422  # htmx swaps only 2xx answers
    else:
        result = await _call_proxy(request, secret, model, prompt)
        status = 200
    result["values"] = {"model": model, "prompt": prompt}
    response = await render(
        request,
        "keys/try.html",
        {"key": key, "try": result},
        fragment="keys/_try_result.html",
        status_code=status,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


PAGES: list[ControllerRouterHandler] = [
    key_list,
    key_new,
    key_create,
    key_created,
    key_detail,
    key_block,
    key_unblock,
    key_revoke_confirm,
    key_revoke,
    key_rotate,
    key_edit,
    key_try,
]
