"""The LLM Server compatible admin API: ``/v1/admin/keys`` and ``/v1/admin/logs``.

A thin adapter onto the key, grant and spend services, with the seed's shapes: keys have a ``label``
and a ``role`` (``default`` = a proxy key, ``admin``; our ``viewer``, ``auditor`` and ``tenant_admin``
are accepted too); a key in a path is its id, its full value or its display prefix (when unique).
Authentication is any admin key (``X-API-Key`` as in the seed, or ``Authorization: Bearer``); errors
are FastAPI-style ``{"detail": ...}``. ``/v1/me/usage`` is served by the proxy itself.

A ``default`` key created here without a tenant may use every model (LLM Server has no grants):
it gets a key grant ``*`` unless ``models`` names the patterns it may use.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from portal.api.deps import ADMIN_DEPENDENCIES, Caller, Db
from portal.api.pagination import check_limit
from portal.api.problems import field_errors
from portal.api.schemas import Limit, money
from portal.auth.admin import AdminCaller, admin_guard
from portal.auth.roles import Permission, need
from portal.db.models import AdminRole, ApiKey, KeyStatus, RequestLog, SubjectType
from portal.errors import ConflictError, DomainError, NotFoundError, ValidationFailedError
from portal.grants.service import add_grant
from portal.keys import service as keys
from portal.spend.queries import list_request_logs, spend_report
from portal.tenants.service import get_tenant
from portal.timeutil import utcnow

__all__ = ["DEFAULT_ROLE", "KeyCreate", "KeyOut", "KeyPatch", "LogOut", "compat_router"]

DEFAULT_ROLE = "default"
"""LLM Server's name for a key without an admin role (a proxy key)."""

_ROLES = {DEFAULT_ROLE: None, **{role.value: role for role in AdminRole}}
_ROLE_NAMES = ", ".join(_ROLES)
_MIN_PREFIX = 6
_SNIPPET = 1000
NEXT_HEADER = "x-next-cursor"
"""Response header carrying the value for the next page's cursor parameter (absent on the last page)."""

RoleName = Annotated[str, msgspec.Meta(examples=["default", "admin"])]
Label = Annotated[str, msgspec.Meta(max_length=200)]


class KeyCreate(msgspec.Struct):
    """``POST /v1/admin/keys``; fields LLM Server does not know are optional extras."""

    label: Label | None = None
    role: RoleName = DEFAULT_ROLE
    tenant: str | None = None
    """Tenant id or slug (a tenant admin's keys always go to its own tenant)."""
    models: list[str] | None = None
    """Model patterns the key may use (key grants); see the module docstring for the default."""
    expires_at: dt.datetime | None = None
    rpm_limit: Limit | None = None
    tpm_limit: Limit | None = None
    cache_enabled: bool = False
    """Answer repeated identical requests from the completion cache."""


class KeyPatch(msgspec.Struct):
    """``PATCH /v1/admin/keys/{key}``: any of label, role, enable/disable (``active`` or ``status``)."""

    label: Label | msgspec.UnsetType | None = msgspec.UNSET
    role: RoleName | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET
    status: str | msgspec.UnsetType = msgspec.UNSET
    """``active``, or ``disabled``/``blocked``."""
    expires_at: dt.datetime | msgspec.UnsetType | None = msgspec.UNSET
    rpm_limit: Limit | msgspec.UnsetType | None = msgspec.UNSET
    tpm_limit: Limit | msgspec.UnsetType | None = msgspec.UNSET
    cache_enabled: bool | msgspec.UnsetType = msgspec.UNSET


class KeyUsage(msgspec.Struct):
    """Lifetime usage of a key: spend (exact USD, a decimal string), requests and tokens."""

    spend: str
    requests: int
    total_tokens: int


class KeyOut(msgspec.Struct):
    id: uuid.UUID
    label: str | None
    role: str
    status: str
    active: bool
    prefix: str
    tenant_id: uuid.UUID | None
    user_id: uuid.UUID | None
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None
    rpm_limit: int | None
    tpm_limit: int | None
    cache_enabled: bool
    usage: KeyUsage


class NewKeyOut(KeyOut):
    """A created key: ``api_key`` (also as ``key``) is the secret, shown this once."""

    api_key: str = ""
    key: str = ""


class LogOut(msgspec.Struct):
    """One inference log (a proxied call)."""

    id: int
    request_id: str
    created_at: dt.datetime
    endpoint: str
    model: str | None
    provider: str | None
    upstream_model: str | None
    status_code: int
    error_type: str | None
    error_message: str | None
    latency_ms: float
    ttft_ms: float | None
    cached: bool
    stream: bool
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: str
    key_id: uuid.UUID | None
    key_prefix: str | None
    tenant_id: uuid.UUID | None
    user_id: uuid.UUID | None
    prompt: str | None
    response: str | None


def _role_name(role: str | None) -> str:
    return role or DEFAULT_ROLE


def _parse_role(name: str) -> AdminRole | None:
    if name not in _ROLES:
        raise ValidationFailedError("invalid role", {"role": f"one of {_ROLE_NAMES}"})
    return _ROLES[name]


def key_out(key: ApiKey, usage: dict[uuid.UUID, tuple[int, int]]) -> KeyOut:
    requests, tokens = usage.get(key.id, (0, 0))
    now = utcnow()
    return KeyOut(
        id=key.id,
        label=key.alias,
        role=_role_name(key.role),
        status=key.status,
        active=key.status == KeyStatus.ACTIVE and (key.expires_at is None or key.expires_at > now),
        prefix=key.key_prefix,
        tenant_id=key.tenant_id,
        user_id=key.user_id,
        created_at=key.created_at,
        expires_at=key.expires_at,
        last_used_at=key.last_used_at,
        revoked_at=key.revoked_at,
        rpm_limit=key.rpm_limit,
        tpm_limit=key.tpm_limit,
        cache_enabled=key.cache_enabled,
        usage=KeyUsage(spend=money(key.spend_total), requests=requests, total_tokens=tokens),
    )


def _snippet(text: str | None) -> str | None:
    return text if text is None or len(text) <= _SNIPPET else text[:_SNIPPET] + "..."


def log_out(row: RequestLog) -> LogOut:
    return LogOut(
        id=row.id,
        request_id=row.request_id,
        created_at=row.created_at,
        endpoint=row.endpoint,
        model=row.model,
        provider=row.provider,
        upstream_model=row.upstream_model,
        status_code=row.status_code,
        error_type=row.error_type,
        error_message=row.error_message,
        latency_ms=row.latency_ms,
        ttft_ms=row.ttft_ms,
        cached=row.cached,
        stream=row.stream,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        total_tokens=row.total_tokens,
        cost=money(row.cost),
        key_id=row.api_key_id,
        key_prefix=row.key_prefix,
        tenant_id=row.tenant_id,
        user_id=row.user_id,
        prompt=_snippet(row.prompt),
        response=_snippet(row.response),
    )


async def _usage(
    db: AsyncSession, tenant_id: uuid.UUID | None, key_id: uuid.UUID | None = None
) -> dict[uuid.UUID, tuple[int, int]]:
    """Requests and tokens per key, from the daily rollup."""
    rows = await spend_report(db, group_by=["key"], tenant_id=tenant_id, api_key_id=key_id)
    return {r.api_key_id: (r.requests, r.total_tokens) for r in rows if r.api_key_id is not None}


async def find_key(db: AsyncSession, caller: AdminCaller, ref: str) -> ApiKey:
    """The key named by ``ref`` (id, full value, or a unique display prefix) within the caller's reach."""
    try:
        key = await keys.get_key(db, ref)
    except NotFoundError:
        key = await _by_prefix(db, caller, ref)
    keys.check_key_access(caller, key)
    return key


async def _by_prefix(db: AsyncSession, caller: AdminCaller, ref: str) -> ApiKey:
    prefix = ref.removesuffix("...").removesuffix("…")
    if len(prefix) < _MIN_PREFIX:
        raise NotFoundError(f"key {ref} does not exist")
    scope = caller.tenant_id if caller.tenant_scoped else None
    matches = [
        key
        for key in await keys.list_keys(db, tenant_id=scope, search=prefix, limit=1000)
        if key.key_prefix.removesuffix("...").startswith(prefix)
    ]
    if not matches:
        raise NotFoundError(f"key {ref} does not exist")
    if len(matches) > 1:
        raise ConflictError(f"the prefix {prefix!r} matches {len(matches)} keys; use the key id")
    return matches[0]


def _wanted_status(data: KeyPatch) -> str | None:
    """The status a patch asks for (``active`` or ``blocked``), or ``None``."""
    wanted: set[str] = set()
    if data.active is not msgspec.UNSET:
        wanted.add(KeyStatus.ACTIVE if data.active else KeyStatus.BLOCKED)
    if data.status is not msgspec.UNSET:
        status = {"active": KeyStatus.ACTIVE, "disabled": KeyStatus.BLOCKED, "blocked": KeyStatus.BLOCKED}
        if data.status not in status:
            raise ValidationFailedError("invalid status", {"status": "active, disabled or blocked"})
        wanted.add(status[data.status])
    if len(wanted) > 1:
        raise ValidationFailedError("contradictory change", {"active": "disagrees with status"})
    return wanted.pop() if wanted else None


def _paged(items: Sequence[Any], cursor: str | None) -> Response[Sequence[Any]]:
    headers = {NEXT_HEADER: cursor} if cursor else {}
    return Response(items, headers=headers)


@get("/keys", opt=need(Permission.KEYS_READ), summary="List keys (LLM Server)")
async def list_keys(
    db: Db,
    caller: Caller,
    status: Annotated[str | None, QueryParameter(description="active, disabled (blocked) or revoked")] = None,
    role: Annotated[str | None, QueryParameter(description=f"one of {_ROLE_NAMES}")] = None,
    search: Annotated[str | None, QueryParameter(description="part of the label or prefix")] = None,
    after: Annotated[uuid.UUID | None, QueryParameter(description=f"the {NEXT_HEADER} header")] = None,
    limit: FromQuery[int] = 100,
) -> Response[Sequence[KeyOut]]:
    check_limit(limit)
    tenant_id = caller.scoped_tenant(None)
    wanted_role = _parse_role(role) if role is not None else msgspec.UNSET
    rows = await keys.list_keys(
        db,
        tenant_id=tenant_id,
        status=KeyStatus.BLOCKED if status == "disabled" else status,
        admin=False if role == DEFAULT_ROLE else None,
        search=search,
        after=after,
        limit=limit,
    )
    usage = await _usage(db, tenant_id)
    page = rows[:limit]
    items = [
        key_out(key, usage)
        for key in page
        if wanted_role is msgspec.UNSET or key.role == (wanted_role.value if wanted_role else None)
    ]
    return _paged(items, str(page[-1].id) if len(rows) > limit else None)


@post("/keys", opt=need(Permission.KEYS_WRITE), summary="Create a key (LLM Server)")
async def create_key(db: Db, caller: Caller, data: JSONBody[KeyCreate]) -> NewKeyOut:
    role = _parse_role(data.role)
    keys.check_key_role(caller, role)
    tenant_id = (await get_tenant(db, data.tenant)).id if data.tenant else None
    tenant_id = caller.scoped_tenant(tenant_id)
    new = await keys.create_key(
        db,
        caller.actor,
        tenant_id=tenant_id,
        alias=data.label,
        role=role,
        expires_at=data.expires_at,
        rpm_limit=data.rpm_limit,
        tpm_limit=data.tpm_limit,
        cache_enabled=data.cache_enabled,
    )
    patterns = (
        data.models if data.models is not None else (["*"] if tenant_id is None and role is None else [])
    )
    for pattern in patterns:
        await add_grant(
            db,
            caller.actor,
            subject_type=SubjectType.KEY,
            subject_id=new.key.id,
            model_pattern=pattern,
            tenant_id=tenant_id,
        )
    out = key_out(new.key, {})
    return NewKeyOut(**msgspec.structs.asdict(out), api_key=new.secret, key=new.secret)


@get("/keys/{key_ref:str}", opt=need(Permission.KEYS_READ), summary="Read a key (LLM Server)")
async def get_key(db: Db, caller: Caller, key_ref: FromPath[str]) -> KeyOut:
    key = await find_key(db, caller, key_ref)
    return key_out(key, await _usage(db, key.tenant_id, key.id))


@patch("/keys/{key_ref:str}", opt=need(Permission.KEYS_WRITE), summary="Update, enable or disable a key")
async def update_key(db: Db, caller: Caller, key_ref: FromPath[str], data: JSONBody[KeyPatch]) -> KeyOut:
    key = await find_key(db, caller, key_ref)
    status = _wanted_status(data)
    changes: dict[str, Any] = {}
    if data.role is not msgspec.UNSET:
        role = _parse_role(data.role)
        keys.check_key_role(caller, role, key=key)
        if role != (AdminRole(key.role) if key.role else None):
            changes["role"] = role
    if data.label is not msgspec.UNSET:
        changes["alias"] = data.label
    for name in ("expires_at", "rpm_limit", "tpm_limit", "cache_enabled"):
        value = getattr(data, name)
        if value is not msgspec.UNSET:
            changes[name] = value
    if changes:
        key = await keys.update_key(db, caller.actor, key, changes)
    if status == KeyStatus.BLOCKED and key.status != KeyStatus.BLOCKED:
        key = await keys.block_key(db, caller.actor, key)
    elif status == KeyStatus.ACTIVE and key.status != KeyStatus.ACTIVE:
        key = await keys.unblock_key(db, caller.actor, key)
    return key_out(key, await _usage(db, key.tenant_id, key.id))


@delete("/keys/{key_ref:str}", opt=need(Permission.KEYS_WRITE), status_code=200, summary="Revoke a key")
async def revoke_key(db: Db, caller: Caller, key_ref: FromPath[str]) -> KeyOut:
    key = await find_key(db, caller, key_ref)
    if key.status != KeyStatus.REVOKED:
        key = await keys.revoke_key(db, caller.actor, key)
    return key_out(key, await _usage(db, key.tenant_id, key.id))


@get("/logs", opt=need(Permission.LOGS_READ), summary="Recent inference logs (LLM Server)")
async def list_logs(
    db: Db,
    caller: Caller,
    model: Annotated[str | None, QueryParameter(description="public model name")] = None,
    cached: Annotated[bool | None, QueryParameter(description="only cached (true) or uncached")] = None,
    status: Annotated[int | None, QueryParameter(description="HTTP status code")] = None,
    ok: Annotated[bool | None, QueryParameter(description="only successes (true) or failures")] = None,
    key: Annotated[str | None, QueryParameter(description="a key's id, value or prefix")] = None,
    start: Annotated[dt.datetime | None, QueryParameter(description="from (ISO 8601)")] = None,
    end: Annotated[dt.datetime | None, QueryParameter(description="until (ISO 8601)")] = None,
    before_id: Annotated[int | None, QueryParameter(description=f"the {NEXT_HEADER} header")] = None,
    limit: FromQuery[int] = 100,
) -> Response[Sequence[LogOut]]:
    check_limit(limit)
    key_id = (await find_key(db, caller, key)).id if key else None
    rows = await list_request_logs(
        db,
        tenant_id=caller.scoped_tenant(None),
        api_key_id=key_id,
        model=model,
        status=status,
        ok=ok,
        cached=cached,
        start=start,
        end=end,
        before_id=before_id,
        limit=limit,
    )
    page = rows[:limit]
    return _paged([log_out(row) for row in page], str(page[-1].id) if len(rows) > limit else None)


def _detail(status: int, detail: Any, headers: dict[str, str] | None = None) -> Response[dict[str, Any]]:
    return Response({"detail": detail}, status_code=status, headers=headers)


def _on_validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    errors = field_errors(exc)
    if not errors:
        return _detail(400, str(exc.detail))
    return _detail(422, [{"loc": ["body", f], "msg": m, "type": "value_error"} for f, m in errors.items()])


def _on_domain(_: Request[Any, Any, Any], exc: DomainError) -> Response[dict[str, Any]]:
    if isinstance(exc, ValidationFailedError) and exc.fields:
        return _detail(
            422, [{"loc": ["body", f], "msg": m, "type": "value_error"} for f, m in exc.fields.items()]
        )
    return _detail(exc.status_code, exc.message)


def _on_http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    headers = dict(exc.headers or {})
    if exc.status_code == 401:
        headers.setdefault("www-authenticate", "APIKey")
    return _detail(exc.status_code, str(exc.detail), headers)


HANDLERS: dict[type[Exception] | int, Callable[..., Response[Any]]] = {
    ValidationException: _on_validation,
    DomainError: _on_domain,
    HTTPException: _on_http,
}


def compat_router() -> Router:
    """The ``/v1/admin`` router (Litestar routes it ahead of the ``/v1`` proxy mount)."""
    return Router(
        path="/v1/admin",
        route_handlers=[list_keys, create_key, get_key, update_key, revoke_key, list_logs],
        guards=[admin_guard],
        dependencies=ADMIN_DEPENDENCIES,
        exception_handlers=HANDLERS,
        tags=["compat: LLM Server"],
        security=[{"adminKey": []}],
    )
