"""``/api/tenants``: create, list, read, update (incl. suspend) and delete tenants."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.types import ControllerRouterHandler

from portal.api.deps import Caller, Db
from portal.api.pagination import Page, check_limit, cursor_uuid, page_of
from portal.api.schemas import Limit, money, unset_fields
from portal.auth.roles import Permission, need
from portal.db.models import Tenant
from portal.tenants import service

__all__ = ["ROUTES", "TenantController", "TenantCreate", "TenantOut", "TenantPatch", "tenant_out"]

Slug = Annotated[str, msgspec.Meta(min_length=1, max_length=64, examples=["team-a"])]
Status = Annotated[str, msgspec.Meta(pattern="^(active|suspended)$")]


class TenantCreate(msgspec.Struct, forbid_unknown_fields=True):
    slug: Slug
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    description: str = ""
    status: Status = "active"
    cache_enabled: bool = False
    log_prompts: bool = False
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    rpm_limit: Limit | None = None
    tpm_limit: Limit | None = None
    max_parallel: Limit | None = None


class TenantPatch(msgspec.Struct, forbid_unknown_fields=True):
    slug: Slug | msgspec.UnsetType = msgspec.UNSET
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType = msgspec.UNSET
    status: Status | msgspec.UnsetType = msgspec.UNSET
    cache_enabled: bool | msgspec.UnsetType = msgspec.UNSET
    log_prompts: bool | msgspec.UnsetType = msgspec.UNSET
    metadata: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    rpm_limit: Limit | msgspec.UnsetType | None = msgspec.UNSET
    tpm_limit: Limit | msgspec.UnsetType | None = msgspec.UNSET
    max_parallel: Limit | msgspec.UnsetType | None = msgspec.UNSET


class TenantOut(msgspec.Struct):
    id: uuid.UUID
    slug: str
    name: str
    description: str
    status: str
    cache_enabled: bool
    log_prompts: bool
    metadata: dict[str, Any]
    rpm_limit: int | None
    tpm_limit: int | None
    max_parallel: int | None
    spend_total: str
    created_at: dt.datetime
    updated_at: dt.datetime


def tenant_out(tenant: Tenant) -> TenantOut:
    return TenantOut(
        id=tenant.id,
        slug=tenant.slug,
        name=tenant.name,
        description=tenant.description,
        status=tenant.status,
        cache_enabled=tenant.cache_enabled,
        log_prompts=tenant.log_prompts,
        metadata=dict(tenant.metadata_ or {}),
        rpm_limit=tenant.rpm_limit,
        tpm_limit=tenant.tpm_limit,
        max_parallel=tenant.max_parallel,
        spend_total=money(tenant.spend_total),
        created_at=tenant.created_at,
        updated_at=tenant.updated_at,
    )


class TenantController(Controller):
    """Tenants (LiteLLM: teams). A tenant admin sees and reads only its own tenant."""

    path = "/tenants"
    tags = ["tenants"]

    @get("/", opt=need(Permission.TENANTS_READ), summary="List tenants")
    async def list_tenants(
        self,
        db: Db,
        caller: Caller,
        status: FromQuery[Status | None] = None,
        search: Annotated[str | None, QueryParameter(description="part of the slug or name")] = None,
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int] = 100,
    ) -> Page[TenantOut]:
        check_limit(limit)
        rows = await service.list_tenants(
            db,
            only=caller.tenant_id if caller.tenant_scoped else None,
            status=status,
            search=search,
            after=cursor_uuid(cursor),
            limit=limit,
        )
        return page_of(rows, limit, lambda t: t.id, tenant_out)

    @post("/", opt=need(Permission.TENANTS_WRITE), summary="Create a tenant")
    async def create_tenant(self, db: Db, caller: Caller, data: JSONBody[TenantCreate]) -> TenantOut:
        fields = msgspec.structs.asdict(data)
        slug = fields.pop("slug")
        tenant = await service.create_tenant(db, caller.actor, slug=slug, **fields)
        return tenant_out(tenant)

    @get("/{tenant_ref:str}", opt=need(Permission.TENANTS_READ), summary="Read a tenant (id or slug)")
    async def get_tenant(self, db: Db, caller: Caller, tenant_ref: FromPath[str]) -> TenantOut:
        tenant = await service.get_tenant(db, tenant_ref)
        caller.check_visible(tenant.id, f"tenant {tenant_ref}")
        return tenant_out(tenant)

    @patch("/{tenant_ref:str}", opt=need(Permission.TENANTS_WRITE), summary="Update or suspend a tenant")
    async def update_tenant(
        self, db: Db, caller: Caller, tenant_ref: FromPath[str], data: JSONBody[TenantPatch]
    ) -> TenantOut:
        tenant = await service.get_tenant(db, tenant_ref)
        await service.update_tenant(db, caller.actor, tenant, unset_fields(data))
        return tenant_out(tenant)

    @delete("/{tenant_ref:str}", opt=need(Permission.TENANTS_WRITE), summary="Delete a tenant")
    async def delete_tenant(self, db: Db, caller: Caller, tenant_ref: FromPath[str]) -> None:
        tenant = await service.get_tenant(db, tenant_ref)
        await service.delete_tenant(db, caller.actor, tenant)


ROUTES: list[ControllerRouterHandler] = [TenantController]
