"""``/api/grants``: list, add, delete and replace the model grants of tenants, users and keys.

A grant is a (model glob, provider glob) pair on a subject; see :mod:`portal.grants.matcher` for how
the levels combine. Changes apply to the proxy at once (cached principals are forgotten).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

import msgspec
from litestar import Controller, delete, get, post, put
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.types import ControllerRouterHandler
from sqlalchemy.ext.asyncio import AsyncSession

from portal.api.deps import Caller, Db
from portal.api.pagination import Page
from portal.auth.admin import AdminCaller
from portal.auth.roles import Permission, need
from portal.db.models import Grant
from portal.grants import service
from portal.grants.scope import (
    audit_tenant,
    check_read,
    check_write,
    list_filter,
    subject_for_write,
)
from portal.grants.subjects import resolve_subject

__all__ = [
    "ROUTES",
    "GrantController",
    "GrantIn",
    "GrantOut",
    "GrantPair",
    "GrantSet",
    "GrantSetIn",
    "grant_out",
]

SubjectTypeStr = Annotated[str, msgspec.Meta(pattern="^(tenant|user|key)$", examples=["key"])]
Pattern = Annotated[str, msgspec.Meta(min_length=1, max_length=200, examples=["gpt-4o*"])]
ProviderPattern = Annotated[str, msgspec.Meta(min_length=1, max_length=64, examples=["*"])]


class GrantIn(msgspec.Struct, forbid_unknown_fields=True):
    subject_type: SubjectTypeStr
    subject_id: Annotated[str, msgspec.Meta(description="id (a tenant also by slug, a user by email)")]
    model_pattern: Pattern = "*"
    provider_pattern: ProviderPattern = "*"


class GrantPair(msgspec.Struct, forbid_unknown_fields=True):
    model_pattern: Pattern = "*"
    provider_pattern: ProviderPattern = "*"


class GrantSetIn(msgspec.Struct, forbid_unknown_fields=True):
    grants: list[GrantPair]


class GrantOut(msgspec.Struct):
    id: uuid.UUID
    subject_type: str
    subject_id: uuid.UUID
    model_pattern: str
    provider_pattern: str
    created_at: dt.datetime


class GrantSet(msgspec.Struct):
    subject_type: str
    subject_id: uuid.UUID
    grants: list[GrantOut]


def grant_out(grant: Grant) -> GrantOut:
    return GrantOut(
        id=grant.id,
        subject_type=grant.subject_type,
        subject_id=grant.subject_id,
        model_pattern=grant.model_pattern,
        provider_pattern=grant.provider_pattern,
        created_at=grant.created_at,
    )


async def _check_grant(db: AsyncSession, caller: AdminCaller, grant: Grant, *, write: bool) -> None:
    """A tenant admin reaches a grant only through a subject of its tenant."""
    if not caller.tenant_scoped:
        return
    subject = await resolve_subject(db, grant.subject_type, grant.subject_id)
    (check_write if write else check_read)(caller, subject)


class GrantController(Controller):
    """Model grants. A tenant admin manages those of its tenant's keys and users only."""

    path = "/grants"
    tags = ["grants"]

    @get("/", opt=need(Permission.GRANTS_READ), summary="List grants")
    async def list_grants(
        self,
        db: Db,
        caller: Caller,
        subject_type: Annotated[str | None, QueryParameter(description="tenant, user or key")] = None,
        subject_id: Annotated[
            str | None, QueryParameter(description="the subject (with subject_type)")
        ] = None,
    ) -> Page[GrantOut]:
        ident = await list_filter(db, caller, subject_type, subject_id)
        rows = await service.list_grants(
            db,
            subject_type=subject_type,
            subject_id=ident,
            tenant_id=caller.tenant_id if caller.tenant_scoped else None,
        )
        return Page(items=[grant_out(g) for g in rows])

    @post("/", opt=need(Permission.GRANTS_WRITE), summary="Add a grant (idempotent)")
    async def add_grant(self, db: Db, caller: Caller, data: JSONBody[GrantIn]) -> GrantOut:
        subject = await subject_for_write(db, caller, data.subject_type, data.subject_id)
        grant = await service.add_grant(
            db,
            caller.actor,
            subject_type=subject.type,
            subject_id=subject.id,
            model_pattern=data.model_pattern,
            provider_pattern=data.provider_pattern,
            tenant_id=audit_tenant(caller, subject),
        )
        return grant_out(grant)

    @get("/{grant_id:str}", opt=need(Permission.GRANTS_READ), summary="Read a grant")
    async def get_grant(self, db: Db, caller: Caller, grant_id: FromPath[str]) -> GrantOut:
        grant = await service.get_grant(db, grant_id)
        await _check_grant(db, caller, grant, write=False)
        return grant_out(grant)

    @delete("/{grant_id:str}", opt=need(Permission.GRANTS_WRITE), summary="Remove a grant")
    async def delete_grant(self, db: Db, caller: Caller, grant_id: FromPath[str]) -> None:
        grant = await service.get_grant(db, grant_id)
        await _check_grant(db, caller, grant, write=True)
        await service.delete_grant(
            db, caller.actor, grant, tenant_id=caller.tenant_id if caller.tenant_scoped else None
        )

    @put(
        "/{subject_type:str}/{subject_id:str}",
        opt=need(Permission.GRANTS_WRITE),
        summary="Replace a subject's grants (an empty list removes them all)",
    )
    async def replace_grants(
        self,
        db: Db,
        caller: Caller,
        subject_type: FromPath[str],
        subject_id: FromPath[str],
        data: JSONBody[GrantSetIn],
    ) -> GrantSet:
        subject = await subject_for_write(db, caller, subject_type, subject_id)
        grants = await service.replace_grants(
            db,
            caller.actor,
            subject_type=subject.type,
            subject_id=subject.id,
            pairs=[(g.model_pattern, g.provider_pattern) for g in data.grants],
            tenant_id=audit_tenant(caller, subject),
        )
        return GrantSet(
            subject_type=subject.type, subject_id=subject.id, grants=[grant_out(g) for g in grants]
        )


ROUTES: list[ControllerRouterHandler] = [GrantController]
