"""COO-LLM compatible admin API at ``/admin/v1``: clients, client metrics, cost stats, config backup.

Thin adapters onto the key, grant and spend services (see :mod:`portal.compat.coo_clients` for how a
client maps onto a key). Authentication and roles are the admin API's own (``Authorization: Bearer``
with an admin key or the master key). Errors are COO-LLM style ``{"error": "<message>"}``: 400 for a
malformed or invalid request (COO-LLM is a Go service and answers 400 to every bad input), 401 without
a valid admin key, 403 when the key's role lacks the permission, 404 for an unknown client, 409 for a
client id or api_key already in use.

Routes (one permission each):

- ``POST /clients`` (keys:write) ``{client_id, api_key?, description?, allowed_providers?}`` -> 200 (as
  COO-LLM answers) ``ClientInfo`` with the secret (generated when ``api_key`` is absent; shown only here).
  ``allowed_providers`` absent means ``["*"]`` (as for ``api_keys`` in the config file); ``[]`` allows
  nothing. A tenant admin's clients belong to its tenant; an admin's clients have no tenant.
- ``GET /clients/list`` (keys:read) -> ``{"clients": [ClientInfo]}`` (COO-LLM's envelope; ``api_key`` is
  the display prefix).
- ``GET /clients/{id}`` (keys:read) -> ``ClientInfo``; ``PUT /clients/{id}`` (keys:write) changes
  ``description`` and/or ``allowed_providers`` (absent fields stay) -> ``ClientInfo``;
  ``DELETE /clients/{id}`` (keys:write) deletes the key and its grants ->
  ``{"status": "deleted", "client_id"}``. The proxy refuses a deleted key, or applies new providers,
  from the next request on.
- ``GET /metrics/clients/{id}?start=&end=`` (spend:read; unix seconds, either optional) ->
  ``{client_id, total_requests, total_tokens, total_cost, success_rate, avg_latency, last_request_time}``.
- ``GET /stats?group_by=&client_key=&provider=&model=&start=&end=`` (spend:read) -> see :func:`stats`.
- ``GET /config`` (config:read) -> the effective configuration, secrets redacted
  (:mod:`portal.ops.config_export`); JSON (also valid YAML), or YAML with ``?format=yaml`` or
  ``Accept: application/yaml``.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, delete, get, post, put
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from sqlalchemy.exc import IntegrityError

from portal.api.deps import ADMIN_DEPENDENCIES, Caller, Db, Gw
from portal.api.problems import field_errors
from portal.api.schemas import money
from portal.auth.admin import admin_guard
from portal.auth.roles import Permission, need
from portal.compat.coo_clients import (
    ClientInfo,
    alias_taken,
    allowed_providers,
    client_info,
    find_client,
    grant_pairs,
    list_clients,
    provider_map,
)
from portal.db.models import ApiKey, SubjectType
from portal.errors import ConflictError, DomainError, NotFoundError, ValidationFailedError
from portal.grants.service import replace_grants
from portal.keys.service import check_key_access, create_key, delete_key, update_key
from portal.ops.config_export import config_document, to_yaml
from portal.spend.queries import SpendRow, call_stats, spend_report
from portal.timeutil import utcnow

__all__ = [
    "ClientCreate",
    "ClientList",
    "ClientMetrics",
    "ClientUpdate",
    "compat_router",
]

log = logging.getLogger(__name__)

ClientId = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$", examples=["prod-app-001"])
]
ProviderName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, examples=["openai"])]
Description = Annotated[str, msgspec.Meta(max_length=1000)]
ApiKeyValue = Annotated[str, msgspec.Meta(max_length=200)]
_RESERVED_IDS = frozenset({"list"})


class ClientCreate(msgspec.Struct, forbid_unknown_fields=True):
    client_id: ClientId
    api_key: ApiKeyValue | None = None
    description: Description = ""
    allowed_providers: list[ProviderName] = msgspec.field(default_factory=lambda: ["*"])


class ClientUpdate(msgspec.Struct, forbid_unknown_fields=True):
    description: Description | msgspec.UnsetType = msgspec.UNSET
    allowed_providers: list[ProviderName] | msgspec.UnsetType = msgspec.UNSET


class ClientList(msgspec.Struct):
    clients: list[ClientInfo]


class ClientDeleted(msgspec.Struct):
    status: str
    client_id: str


class ClientMetrics(msgspec.Struct):
    """COO-LLM's client metrics: cost in USD (a float, as COO-LLM answers), latency in ms, time in unix s."""

    client_id: str
    total_requests: int
    total_tokens: int
    total_cost: float
    success_rate: float
    avg_latency: float
    last_request_time: int


# --- errors ---------------------------------------------------------------------------------------


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response[dict[str, str]]:
    return Response({"error": message}, status_code=status, headers=headers)


_FIELD_NAMES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^grants\[(\d+)\]\.provider_pattern$"), r"allowed_providers[\1]"),
    (re.compile(r"^key$"), "api_key"),
]


def _field(name: str) -> str:
    """A service's field name in this API's words (a key's ``key`` is the client's ``api_key``...)."""
    for pattern, replacement in _FIELD_NAMES:
        if pattern.match(name):
            return pattern.sub(replacement, name)
    return name


def _details(errors: dict[str, str]) -> str:
    return "; ".join(f"{_field(k)}: {v}" for k, v in errors.items())


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, str]]:
    errors = field_errors(exc)
    return _error(400, f"invalid request: {_details(errors)}" if errors else str(exc.detail))


def _domain(request: Request[Any, Any, Any], exc: DomainError) -> Response[dict[str, str]]:
    if isinstance(exc, ValidationFailedError):
        detail = _details(exc.fields)
        return _error(400, f"{exc.message} ({detail})" if detail else exc.message)
    return _error(exc.status_code, exc.message)


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, str]]:
    headers = dict(exc.headers or {})
    if exc.status_code == 401:
        headers["www-authenticate"] = "Bearer"
    return _error(exc.status_code, str(exc.detail), headers)


def _integrity(request: Request[Any, Any, Any], exc: IntegrityError) -> Response[dict[str, str]]:
    log.info("integrity error on %s: %s", request.url.path, exc.orig)
    return _error(409, "this conflicts with an existing record")


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, str]]:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(500, "internal error; the server log has the details")


ERROR_HANDLERS: dict[type[Exception] | int, Callable[..., Response[Any]]] = {
    ValidationException: _validation,
    DomainError: _domain,
    HTTPException: _http,
    IntegrityError: _integrity,
    Exception: _internal,
}


# --- clients --------------------------------------------------------------------------------------


async def _client(db: Db, caller: Caller, client_id: str) -> ApiKey:
    """The client's key; 404 as well for a client outside a tenant admin's tenant."""
    key = await find_client(db, client_id)
    if not caller.sees(key.tenant_id):
        raise NotFoundError(f"client {client_id} not found")
    check_key_access(caller, key)
    return key


async def _info(db: Db, key: ApiKey) -> ClientInfo:
    return client_info(key, (await provider_map(db, [key]))[key.id])


@post("/clients", opt=need(Permission.KEYS_WRITE), status_code=200, summary="Create a client")
async def create_client(db: Db, caller: Caller, data: JSONBody[ClientCreate]) -> ClientInfo:
    if data.client_id in _RESERVED_IDS:
        raise ValidationFailedError("reserved client id", {"client_id": f"{data.client_id!r} is reserved"})
    if await alias_taken(db, data.client_id):
        raise ConflictError(f"client {data.client_id} already exists")
    new = await create_key(
        db,
        caller.actor,
        tenant_id=caller.scoped_tenant(None),
        alias=data.client_id,
        secret=data.api_key or None,
        source="coo",
        metadata={"client_id": data.client_id, "description": data.description},
    )
    grants = await replace_grants(
        db,
        caller.actor,
        subject_type=SubjectType.KEY,
        subject_id=new.key.id,
        pairs=grant_pairs(data.allowed_providers),
        tenant_id=new.key.tenant_id,
    )
    return client_info(new.key, allowed_providers(grants), secret=new.secret)


@get("/clients/list", opt=need(Permission.KEYS_READ), summary="List clients")
async def list_all_clients(db: Db, caller: Caller) -> ClientList:
    keys = await list_clients(db, tenant_id=caller.tenant_id if caller.tenant_scoped else None)
    providers = await provider_map(db, keys) if keys else {}
    return ClientList(clients=[client_info(k, providers[k.id]) for k in keys])


@get("/clients/{client_id:str}", opt=need(Permission.KEYS_READ), summary="Read a client")
async def get_client(db: Db, caller: Caller, client_id: FromPath[str]) -> ClientInfo:
    return await _info(db, await _client(db, caller, client_id))


@put("/clients/{client_id:str}", opt=need(Permission.KEYS_WRITE), summary="Update a client")
async def update_client(
    db: Db, caller: Caller, client_id: FromPath[str], data: JSONBody[ClientUpdate]
) -> ClientInfo:
    key = await _client(db, caller, client_id)
    if not isinstance(data.description, msgspec.UnsetType):
        metadata = {**(key.metadata_ or {}), "description": data.description}
        await update_key(db, caller.actor, key, {"metadata": metadata})
    if not isinstance(data.allowed_providers, msgspec.UnsetType):
        await replace_grants(
            db,
            caller.actor,
            subject_type=SubjectType.KEY,
            subject_id=key.id,
            pairs=grant_pairs(data.allowed_providers),
            tenant_id=key.tenant_id,
        )
    return await _info(db, key)


@delete(
    "/clients/{client_id:str}", opt=need(Permission.KEYS_WRITE), status_code=200, summary="Delete a client"
)
async def delete_client(db: Db, caller: Caller, client_id: FromPath[str]) -> ClientDeleted:
    key = await _client(db, caller, client_id)
    await delete_key(db, caller.actor, key)
    return ClientDeleted(status="deleted", client_id=client_id)


# --- metrics and stats ----------------------------------------------------------------------------


def _moment(value: int | None, name: str, *, whole_second: bool = False) -> dt.datetime | None:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromtimestamp(value, dt.UTC)
        return moment + dt.timedelta(seconds=1, microseconds=-1) if whole_second else moment
    except (OverflowError, OSError, ValueError):
        raise ValidationFailedError("invalid time", {name: "unix seconds"}) from None


def _range(start: int | None, end: int | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    """``start``..``end`` in unix seconds, both inclusive: ``end`` covers its whole second."""
    since, until = _moment(start, "start"), _moment(end, "end", whole_second=True)
    if since is not None and until is not None and since > until:
        raise ValidationFailedError("invalid time range", {"start": "must not be after end"})
    return since, until


@get("/metrics/clients/{client_id:str}", opt=need(Permission.SPEND_READ), summary="Client metrics")
async def client_metrics(
    db: Db,
    caller: Caller,
    client_id: FromPath[str],
    start: Annotated[int | None, QueryParameter(description="unix seconds (inclusive)")] = None,
    end: Annotated[int | None, QueryParameter(description="unix seconds (inclusive)")] = None,
) -> ClientMetrics:
    since, until = _range(start, end)
    key = await _client(db, caller, client_id)
    stats = await call_stats(db, api_key_id=key.id, start=since, end=until)
    return ClientMetrics(
        client_id=client_id,
        total_requests=stats.total_requests,
        total_tokens=stats.total_tokens,
        total_cost=float(stats.total_cost),
        success_rate=stats.success_rate,
        avg_latency=round(stats.avg_latency_ms, 3),
        last_request_time=int(stats.last_request_at.timestamp()) if stats.last_request_at else 0,
    )


_STATS_GROUPS = {
    "provider": "provider",
    "model": "model",
    "client": "key",
    "client_key": "key",
    "id": "key",
}


def _stats_groups(group_by: str) -> list[str]:
    names = [n.strip() for n in group_by.split(",") if n.strip()]
    unknown = [n for n in names if n not in _STATS_GROUPS]
    if unknown or not names:
        raise ValidationFailedError(
            "invalid group_by", {"group_by": "a comma-separated list of provider, model, client"}
        )
    return list(dict.fromkeys(names))


def _label(row: SpendRow, name: str) -> str:
    field = _STATS_GROUPS[name]
    if field == "key":
        return row.key_alias or row.key_prefix or "unknown"
    value = getattr(row, field)
    return str(value) if value else "unknown"


def _leaf() -> dict[str, Any]:
    return {
        "queries": 0,
        "tokens": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "errors": 0,
        "cost": Decimal(0),
    }


def _add(leaf: dict[str, Any], row: SpendRow) -> None:
    leaf["queries"] += row.requests
    leaf["tokens"] += row.total_tokens
    leaf["prompt_tokens"] += row.prompt_tokens
    leaf["completion_tokens"] += row.completion_tokens
    leaf["errors"] += row.errors
    leaf["cost"] += row.cost


def _finish(tree: dict[str, Any]) -> dict[str, Any]:
    """Leaves get ``cost`` as a float (COO-LLM) and ``cost_exact`` as an exact decimal string."""
    if "queries" in tree and isinstance(tree.get("cost"), Decimal):
        cost: Decimal = tree["cost"]
        return {**tree, "cost": float(cost), "cost_exact": money(cost)}
    return {name: _finish(child) for name, child in tree.items()}


@get("/stats", opt=need(Permission.SPEND_READ), summary="Cost breakdown")
async def stats(
    db: Db,
    caller: Caller,
    group_by: Annotated[
        str, QueryParameter(description="comma-separated: provider, model, client (default client)")
    ] = "client",
    client_key: Annotated[str | None, QueryParameter(description="only this client (its id)")] = None,
    provider: FromQuery[str | None] = None,
    model: FromQuery[str | None] = None,
    start: Annotated[int | None, QueryParameter(description="unix seconds; default 24 hours ago")] = None,
    end: Annotated[int | None, QueryParameter(description="unix seconds; default now")] = None,
) -> dict[str, Any]:
    """Requests, tokens and cost grouped like COO-LLM's ``/admin/v1/stats``: ``stats`` nests one level per
    ``group_by`` name (``stats[provider][model] = {...}``), each leaf ``{queries, tokens, prompt_tokens,
    completion_tokens, errors, cost, cost_exact}``; ``total`` is the same leaf over everything selected.
    Read from the daily rollup, so ``start`` and ``end`` select whole UTC days."""
    groups = _stats_groups(group_by)
    now = utcnow()
    since, until = _range(start, end)
    since = since or now - dt.timedelta(hours=24)
    until = until or now
    if since > until:
        raise ValidationFailedError("invalid time range", {"start": "must not be after end"})
    key = await _client(db, caller, client_key) if client_key else None
    rows = await spend_report(
        db,
        group_by=list(dict.fromkeys(_STATS_GROUPS[g] for g in groups)),
        tenant_id=caller.tenant_id if caller.tenant_scoped else None,
        api_key_id=key.id if key else None,
        model=model,
        provider=provider,
        start=since.date(),
        end=until.date(),
    )
    tree: dict[str, Any] = {}
    total = _leaf()
    for row in rows:
        node = tree
        for name in groups[:-1]:
            node = node.setdefault(_label(row, name), {})
        _add(node.setdefault(_label(row, groups[-1]), _leaf()), row)
        _add(total, row)
    filters = {
        name: value
        for name, value in (("client_key", client_key), ("provider", provider), ("model", model))
        if value is not None
    }
    return {
        "start": int(since.timestamp()),
        "end": int(until.timestamp()),
        "group_by": groups,
        "filters": filters,
        "stats": _finish(tree),
        "total": _finish(total),
    }


# --- config ---------------------------------------------------------------------------------------

_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


@get("/config", opt=need(Permission.CONFIG_READ), summary="Effective configuration (secrets redacted)")
async def get_config(
    db: Db,
    gateway: Gw,
    request: Request[Any, Any, Any],
    format: Annotated[str | None, QueryParameter(description="json (default) or yaml")] = None,
) -> Response[Any]:
    if format not in {None, "json", "yaml"}:
        raise ValidationFailedError("invalid format", {"format": "json or yaml"})
    accept = request.headers.get("accept", "")
    wants_yaml = format == "yaml" or (format is None and any(t in accept for t in _YAML_TYPES))
    document = await config_document(db, gateway.settings)
    if wants_yaml:
        return Response(to_yaml(document), media_type="application/yaml")
    return Response(document, media_type="application/json")


def compat_router() -> Router:
    """The COO-LLM admin API (``/admin/v1``)."""
    return Router(
        path="/admin/v1",
        route_handlers=[
            create_client,
            list_all_clients,
            get_client,
            update_client,
            delete_client,
            client_metrics,
            stats,
            get_config,
        ],
        guards=[admin_guard],
        dependencies=ADMIN_DEPENDENCIES,
        exception_handlers=ERROR_HANDLERS,
        tags=["COO-LLM compatible"],
        security=[{"adminKey": []}],
    )
