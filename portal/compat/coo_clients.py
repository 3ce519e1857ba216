"""COO-LLM clients as portal keys: how a client maps onto a key, and its ``ClientInfo`` view.

A COO-LLM client is a proxy key (no admin role) whose alias is the client id and whose metadata holds
``{"client_id", "description"}``; its ``allowed_providers`` are the key's own grants
``("*", provider)`` (``["*"]``: every provider). Created by an admin, a client has no tenant and no
user, so its key-level grants are what it may use (see :mod:`portal.grants.matcher`); created by a
tenant admin, it belongs to that admin's tenant and its grants only narrow the tenant's.

Client ids are unique among key aliases. Every rule (secrets, grants, audit, cache invalidation) lives in
the key and grant services; this module only finds keys and shapes them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from portal.db.models import ApiKey, Grant, SubjectType
from portal.errors import NotFoundError
from portal.grants.service import list_grants
from portal.keys.service import list_keys

__all__ = [
    "ClientInfo",
    "alias_taken",
    "allowed_providers",
    "client_info",
    "find_client",
    "grant_pairs",
    "is_client",
    "list_clients",
    "provider_map",
]

_PAGE = 500


class ClientInfo(msgspec.Struct):
    """COO-LLM's ``ClientInfo``; ``api_key`` is the secret only in the answer that created the client,
    else its display prefix (``sk-prod-a...``). Times are unix seconds (``last_used`` 0: never used)."""

    id: str
    api_key: str
    description: str
    allowed_providers: list[str]
    created_at: int
    last_used: int


def is_client(key: ApiKey) -> bool:
    """Whether ``key`` is a COO-LLM client: a proxy key whose metadata names its alias as client id."""
    metadata: dict[str, Any] = key.metadata_ or {}
    return key.role is None and key.alias is not None and metadata.get("client_id") == key.alias


async def _keys_matching(session: AsyncSession, client_id: str) -> list[ApiKey]:
    """Every key whose alias is exactly ``client_id``, oldest first."""
    found: list[ApiKey] = []
    after: uuid.UUID | None = None
    while True:
        rows = await list_keys(session, search=client_id, after=after, limit=_PAGE)
        found.extend(k for k in rows[:_PAGE] if k.alias == client_id)
        if len(rows) <= _PAGE:
            return found
        after = rows[_PAGE - 1].id


async def alias_taken(session: AsyncSession, client_id: str) -> bool:
    """Whether some key (a client or not) already has ``client_id`` as its alias."""
    return bool(await _keys_matching(session, client_id))


async def find_client(session: AsyncSession, client_id: str) -> ApiKey:
    """The key of client ``client_id`` (after a rotation: the replacement), or :class:`NotFoundError`."""
    for key in reversed(await _keys_matching(session, client_id)):
        if is_client(key) and key.replaced_by_id is None:
            return key
    raise NotFoundError(f"client {client_id} not found")


async def list_clients(session: AsyncSession, *, tenant_id: uuid.UUID | None = None) -> list[ApiKey]:
    """Every client (of ``tenant_id`` when given), in creation order."""
    clients: list[ApiKey] = []
    after: uuid.UUID | None = None
    while True:
        rows = await list_keys(session, tenant_id=tenant_id, admin=False, after=after, limit=_PAGE)
        clients.extend(k for k in rows[:_PAGE] if is_client(k) and k.replaced_by_id is None)
        if len(rows) <= _PAGE:
            return clients
        after = rows[_PAGE - 1].id


def grant_pairs(providers: Sequence[str]) -> list[tuple[str, str]]:
    """The key grants that express ``allowed_providers``: every model on each provider."""
    return [("*", provider) for provider in providers]


def allowed_providers(grants: Sequence[Grant]) -> list[str]:
    """The providers a key's grants name, in grant order, each once."""
    return list(dict.fromkeys(g.provider_pattern for g in grants))


async def provider_map(session: AsyncSession, keys: Sequence[ApiKey]) -> dict[uuid.UUID, list[str]]:
    """``allowed_providers`` of each of ``keys`` (one query for one key, one for all key grants else)."""
    if len(keys) == 1:
        grants = await list_grants(session, subject_type=SubjectType.KEY, subject_id=keys[0].id)
        return {keys[0].id: allowed_providers(grants)}
    wanted = {k.id for k in keys}
    by_key: dict[uuid.UUID, list[Grant]] = {}
    for grant in await list_grants(session, subject_type=SubjectType.KEY):
        if grant.subject_id in wanted:
            by_key.setdefault(grant.subject_id, []).append(grant)
    return {key_id: allowed_providers(by_key.get(key_id, [])) for key_id in wanted}


def client_info(key: ApiKey, providers: list[str], *, secret: str | None = None) -> ClientInfo:
    """The ``ClientInfo`` of ``key``; ``secret`` only right after creation."""
    metadata: dict[str, Any] = key.metadata_ or {}
    return ClientInfo(
        id=key.alias or "",
        api_key=secret if secret is not None else key.key_prefix,
        description=str(metadata.get("description", "")),
        allowed_providers=providers,
        created_at=int(key.created_at.timestamp()),
        last_used=int(key.last_used_at.timestamp()) if key.last_used_at else 0,
    )
