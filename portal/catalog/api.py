"""``/api/models``, ``/api/deployments`` and ``/api/credentials``: the model catalog and provider secrets.

Models declared in the configuration file are listed (``source: "config"``) but read-only. A change
here reaches the proxy's routing catalog as soon as the request commits. Credentials are write-only:
no response ever carries a secret, only its last characters (``hint``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from litestar import Controller, delete, get, patch, post, put
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.types import ControllerRouterHandler
from sqlalchemy.ext.asyncio import AsyncSession

from portal.api.deps import Caller, Db, Gw
from portal.api.pagination import Page, check_limit, cursor_uuid, decode_cursor, page_of
from portal.api.schemas import MoneyStr, money, unset_fields
from portal.auth.admin import AdminCaller
from portal.auth.roles import Permission, need
from portal.catalog import credentials as credential_service
from portal.catalog import service
from portal.config import DeploymentConfig, ModelConfig
from portal.db.models import Credential, Deployment, Model
from portal.errors import NotFoundError
from portal.tenants.service import get_tenant

__all__ = [
    "ROUTES",
    "CredentialController",
    "CredentialIn",
    "CredentialOut",
    "DeploymentController",
    "DeploymentIn",
    "DeploymentOut",
    "DeploymentPatch",
    "ModelController",
    "ModelIn",
    "ModelOut",
    "ModelPatch",
]

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, examples=["gpt-4o-mini"])]
Mode = Annotated[str, msgspec.Meta(pattern="^(chat|embedding|completion)$")]
ProviderName = Annotated[str, msgspec.Meta(min_length=1, max_length=32, examples=["openai"])]
Short = Annotated[str, msgspec.Meta(max_length=64)]
Url = Annotated[str, msgspec.Meta(max_length=500, examples=["https://api.openai.com/v1"])]
Weight = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
Timeout = Annotated[float, msgspec.Meta(gt=0, le=3600)]
Retries = Annotated[int, msgspec.Meta(ge=0, le=10)]
Secret = Annotated[str, msgspec.Meta(min_length=1, max_length=20_000)]


class ModelIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    description: str = ""
    mode: Mode = "chat"
    enabled: bool = True
    fallbacks: list[str] = msgspec.field(default_factory=list)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class ModelPatch(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType = msgspec.UNSET
    mode: Mode | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET
    fallbacks: list[str] | msgspec.UnsetType = msgspec.UNSET
    metadata: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class DeploymentIn(msgspec.Struct, forbid_unknown_fields=True):
    provider: ProviderName
    upstream_model: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    api_base: Url | None = None
    api_version: Short | None = None
    region: Short | None = None
    credential: Annotated[str, msgspec.Meta(description="a stored credential's name or id")] | None = None
    credential_ref: Annotated[str, msgspec.Meta(description="env:NAME", max_length=200)] | None = None
    input_price_per_mtok: MoneyStr | None = None
    output_price_per_mtok: MoneyStr | None = None
    weight: Weight = 1
    timeout_s: Timeout = 600.0
    max_retries: Retries = 2
    tenant: Annotated[str, msgspec.Meta(description="tenant id or slug: a per-tenant override")] | None = None
    enabled: bool = True
    extra: dict[str, Any] = msgspec.field(default_factory=dict)


class DeploymentPatch(msgspec.Struct, forbid_unknown_fields=True):
    provider: ProviderName | msgspec.UnsetType = msgspec.UNSET
    upstream_model: Annotated[str, msgspec.Meta(min_length=1, max_length=500)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    name: Annotated[str, msgspec.Meta(max_length=200)] | msgspec.UnsetType = msgspec.UNSET
    api_base: Url | msgspec.UnsetType | None = msgspec.UNSET
    api_version: Short | msgspec.UnsetType | None = msgspec.UNSET
    region: Short | msgspec.UnsetType | None = msgspec.UNSET
    credential: str | msgspec.UnsetType | None = msgspec.UNSET
    credential_ref: str | msgspec.UnsetType | None = msgspec.UNSET
    input_price_per_mtok: MoneyStr | msgspec.UnsetType | None = msgspec.UNSET
    output_price_per_mtok: MoneyStr | msgspec.UnsetType | None = msgspec.UNSET
    weight: Weight | msgspec.UnsetType = msgspec.UNSET
    timeout_s: Timeout | msgspec.UnsetType = msgspec.UNSET
    max_retries: Retries | msgspec.UnsetType = msgspec.UNSET
    tenant: str | msgspec.UnsetType | None = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET
    extra: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class CredentialRef(msgspec.Struct):
    id: uuid.UUID
    name: str


class DeploymentOut(msgspec.Struct):
    id: str
    model: str
    name: str
    provider: str
    upstream_model: str
    api_base: str | None
    api_version: str | None
    region: str | None
    credential: CredentialRef | None
    credential_ref: str | None
    input_price_per_mtok: str | None
    output_price_per_mtok: str | None
    weight: int
    timeout_s: float
    max_retries: int
    tenant_id: uuid.UUID | None
    enabled: bool
    source: str
    extra: dict[str, Any]
    created_at: dt.datetime | None
    updated_at: dt.datetime | None


class ModelOut(msgspec.Struct):
    id: uuid.UUID | None
    name: str
    description: str
    mode: str
    enabled: bool
    fallbacks: list[str]
    metadata: dict[str, Any]
    source: str
    deployments: list[DeploymentOut]
    created_at: dt.datetime | None
    updated_at: dt.datetime | None


class CredentialIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    provider: ProviderName
    secret: Secret


class CredentialSecret(msgspec.Struct, forbid_unknown_fields=True):
    secret: Secret


class CredentialOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    provider: str
    hint: str
    used_by: list[str]
    created_at: dt.datetime
    updated_at: dt.datetime


def _price(value: Decimal | None) -> str | None:
    return None if value is None else money(value)


def deployment_out(deployment: Deployment, model_name: str, credential: Credential | None) -> DeploymentOut:
    return DeploymentOut(
        id=str(deployment.id),
        model=model_name,
        name=deployment.name,
        provider=deployment.provider,
        upstream_model=deployment.upstream_model,
        api_base=deployment.api_base,
        api_version=deployment.api_version,
        region=deployment.region,
        credential=CredentialRef(credential.id, credential.name) if credential is not None else None,
        credential_ref=deployment.credential_ref,
        input_price_per_mtok=_price(deployment.input_price_per_mtok),
        output_price_per_mtok=_price(deployment.output_price_per_mtok),
        weight=deployment.weight,
        timeout_s=deployment.timeout_s,
        max_retries=deployment.max_retries,
        tenant_id=deployment.tenant_id,
        enabled=deployment.enabled,
        source=deployment.source,
        extra=dict(deployment.extra or {}),
        created_at=deployment.created_at,
        updated_at=deployment.updated_at,
    )


def model_out(
    model: Model, deployments: list[tuple[Deployment, Credential | None]], caller: AdminCaller
) -> ModelOut:
    return ModelOut(
        id=model.id,
        name=model.name,
        description=model.description,
        mode=model.mode,
        enabled=model.enabled,
        fallbacks=list(model.fallbacks or ()),
        metadata=dict(model.metadata_ or {}),
        source=model.source,
        deployments=[
            deployment_out(d, model.name, c)
            for d, c in deployments
            if d.tenant_id is None or caller.sees(d.tenant_id)
        ],
        created_at=model.created_at,
        updated_at=model.updated_at,
    )


async def _config_deployment_out(
    db: AsyncSession, model: ModelConfig, index: int, dep: DeploymentConfig
) -> DeploymentOut:
    tenant_id: uuid.UUID | None = None
    found = True
    if dep.tenant is not None:
        try:
            tenant_id = (await get_tenant(db, dep.tenant)).id
        except NotFoundError:
            found = False
    return DeploymentOut(
        id=f"config:{model.name}:{index}",
        model=model.name,
        name=f"{model.name}-{dep.provider}",
        provider=dep.provider,
        upstream_model=dep.model,
        api_base=dep.api_base,
        api_version=dep.api_version,
        region=dep.region,
        credential=None,
        credential_ref=dep.api_key,
        input_price_per_mtok=_price(dep.input_price_per_mtok),
        output_price_per_mtok=_price(dep.output_price_per_mtok),
        weight=dep.weight,
        timeout_s=dep.timeout_s,
        max_retries=dep.max_retries,
        tenant_id=tenant_id,
        enabled=found,
        source="config",
        extra={},
        created_at=None,
        updated_at=None,
    )


async def config_model_out(db: AsyncSession, model: ModelConfig, caller: AdminCaller) -> ModelOut:
    deployments = [await _config_deployment_out(db, model, i, d) for i, d in enumerate(model.deployments)]
    return ModelOut(
        id=None,
        name=model.name,
        description=model.description,
        mode=model.mode,
        enabled=True,
        fallbacks=list(model.fallbacks),
        metadata={},
        source="config",
        deployments=[d for d in deployments if d.tenant_id is None or caller.sees(d.tenant_id)],
        created_at=None,
        updated_at=None,
    )


def _config_models(gateway_models: list[ModelConfig]) -> dict[str, ModelConfig]:
    return {m.name: m for m in gateway_models}


async def _db_model_out(db: AsyncSession, model: Model, caller: AdminCaller) -> ModelOut:
    deployments = await service.model_deployments(db, [model.id])
    return model_out(model, deployments[model.id], caller)


class ModelController(Controller):
    """Public models and their deployments; the config file's models are listed read-only."""

    path = "/models"
    tags = ["models"]

    @get("/", opt=need(Permission.CATALOG_READ), summary="List models (config file's first)")
    async def list_models(
        self,
        db: Db,
        caller: Caller,
        gateway: Gw,
        search: Annotated[str | None, QueryParameter(description="part of the name")] = None,
        enabled: FromQuery[bool | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: FromQuery[int] = 100,
    ) -> Page[ModelOut]:
        check_limit(limit)
        rows = await service.list_catalog(
            db,
            gateway.settings.models,
            search=search,
            enabled=enabled,
            after=decode_cursor(cursor),
            limit=limit,
        )
        stored = [r for r in rows[:limit] if isinstance(r, Model)]
        deployments = await service.model_deployments(db, [m.id for m in stored])
        views: dict[str, ModelOut] = {}
        for row in rows[:limit]:
            if isinstance(row, Model):
                views[row.name] = model_out(row, deployments[row.id], caller)
            else:
                views[row.name] = await config_model_out(db, row, caller)

        def cursor_of(row: Model | ModelConfig) -> str:
            return str(row.id) if isinstance(row, Model) else f"config:{row.name}"

        return page_of(rows, limit, cursor_of, lambda row: views[row.name])

    @post("/", opt=need(Permission.CATALOG_WRITE), summary="Create a model")
    async def create_model(self, db: Db, caller: Caller, gateway: Gw, data: JSONBody[ModelIn]) -> ModelOut:
        fields = msgspec.structs.asdict(data)
        name = fields.pop("name")
        model = await service.create_model(
            db, caller.actor, name=name, reserved=_config_models(gateway.settings.models), **fields
        )
        return model_out(model, [], caller)

    @get("/{model_ref:str}", opt=need(Permission.CATALOG_READ), summary="Read a model (id or name)")
    async def get_model(self, db: Db, caller: Caller, gateway: Gw, model_ref: FromPath[str]) -> ModelOut:
        configured = _config_models(gateway.settings.models).get(model_ref)
        if configured is not None:
            return await config_model_out(db, configured, caller)
        return await _db_model_out(db, await service.get_model(db, model_ref), caller)

    @patch("/{model_ref:str}", opt=need(Permission.CATALOG_WRITE), summary="Update or disable a model")
    async def update_model(
        self, db: Db, caller: Caller, gateway: Gw, model_ref: FromPath[str], data: JSONBody[ModelPatch]
    ) -> ModelOut:
        reserved = _config_models(gateway.settings.models)
        if model_ref in reserved:
            raise service.read_only(model_ref)
        model = await service.get_model(db, model_ref)
        await service.update_model(db, caller.actor, model, unset_fields(data), reserved=reserved)
        return await _db_model_out(db, model, caller)

    @delete(
        "/{model_ref:str}", opt=need(Permission.CATALOG_WRITE), summary="Delete a model and its deployments"
    )
    async def delete_model(self, db: Db, caller: Caller, gateway: Gw, model_ref: FromPath[str]) -> None:
        if model_ref in _config_models(gateway.settings.models):
            raise service.read_only(model_ref)
        await service.delete_model(db, caller.actor, await service.get_model(db, model_ref))

    @post(
        "/{model_ref:str}/deployments",
        opt=need(Permission.CATALOG_WRITE),
        summary="Add a deployment to a model",
    )
    async def create_deployment(
        self, db: Db, caller: Caller, gateway: Gw, model_ref: FromPath[str], data: JSONBody[DeploymentIn]
    ) -> DeploymentOut:
        if model_ref in _config_models(gateway.settings.models):
            raise service.read_only(model_ref)
        model = await service.get_model(db, model_ref)
        deployment = await service.create_deployment(db, caller.actor, model, **msgspec.structs.asdict(data))
        credential = await db.get(Credential, deployment.credential_id) if deployment.credential_id else None
        return deployment_out(deployment, model.name, credential)


async def _deployment_view(db: AsyncSession, deployment: Deployment) -> DeploymentOut:
    model = await service.get_model(db, deployment.model_id)
    credential = (
        await credential_service.get_credential(db, deployment.credential_id)
        if deployment.credential_id is not None
        else None
    )
    return deployment_out(deployment, model.name, credential)


async def _visible_deployment(db: AsyncSession, caller: AdminCaller, deployment_id: str) -> Deployment:
    deployment = await service.get_deployment(db, deployment_id)
    if deployment.tenant_id is not None:
        caller.check_visible(deployment.tenant_id, f"deployment {deployment_id}")
    return deployment


class DeploymentController(Controller):
    """One deployment (upstream) of a model, by id."""

    path = "/deployments"
    tags = ["models"]

    @get("/{deployment_id:str}", opt=need(Permission.CATALOG_READ), summary="Read a deployment")
    async def get_deployment(self, db: Db, caller: Caller, deployment_id: FromPath[str]) -> DeploymentOut:
        return await _deployment_view(db, await _visible_deployment(db, caller, deployment_id))

    @patch(
        "/{deployment_id:str}", opt=need(Permission.CATALOG_WRITE), summary="Update or disable a deployment"
    )
    async def update_deployment(
        self, db: Db, caller: Caller, deployment_id: FromPath[str], data: JSONBody[DeploymentPatch]
    ) -> DeploymentOut:
        deployment = await service.get_deployment(db, deployment_id)
        await service.update_deployment(db, caller.actor, deployment, unset_fields(data))
        return await _deployment_view(db, deployment)

    @delete("/{deployment_id:str}", opt=need(Permission.CATALOG_WRITE), summary="Delete a deployment")
    async def delete_deployment(self, db: Db, caller: Caller, deployment_id: FromPath[str]) -> None:
        await service.delete_deployment(db, caller.actor, await service.get_deployment(db, deployment_id))


def credential_out(credential: Credential, used_by: list[str]) -> CredentialOut:
    return CredentialOut(
        id=credential.id,
        name=credential.name,
        provider=credential.provider,
        hint=credential.hint,
        used_by=used_by,
        created_at=credential.created_at,
        updated_at=credential.updated_at,
    )


class CredentialController(Controller):
    """Provider secrets, encrypted at rest; write-only (never returned)."""

    path = "/credentials"
    tags = ["credentials"]

    @get("/", opt=need(Permission.CREDENTIALS_READ), summary="List credentials (never the secrets)")
    async def list_credentials(
        self, db: Db, gateway: Gw, cursor: FromQuery[str | None] = None, limit: FromQuery[int] = 100
    ) -> Page[CredentialOut]:
        check_limit(limit)
        rows = await credential_service.list_credentials(db, after=cursor_uuid(cursor), limit=limit)
        users = await credential_service.credential_users(db, rows[:limit], gateway.settings.models)
        return page_of(rows, limit, lambda c: c.id, lambda c: credential_out(c, users[c.id]))

    @post("/", opt=need(Permission.CREDENTIALS_WRITE), summary="Store a provider secret (encrypted)")
    async def create_credential(
        self, db: Db, caller: Caller, gateway: Gw, data: JSONBody[CredentialIn]
    ) -> CredentialOut:
        credential = await credential_service.create_credential(
            db, caller.actor, gateway.cipher, name=data.name, provider=data.provider, secret=data.secret
        )
        users = await credential_service.credential_users(db, [credential], gateway.settings.models)
        return credential_out(credential, users[credential.id])

    @get(
        "/{credential_ref:str}",
        opt=need(Permission.CREDENTIALS_READ),
        summary="Read a credential (name or id)",
    )
    async def get_credential(self, db: Db, gateway: Gw, credential_ref: FromPath[str]) -> CredentialOut:
        credential = await credential_service.get_credential(db, credential_ref)
        users = await credential_service.credential_users(db, [credential], gateway.settings.models)
        return credential_out(credential, users[credential.id])

    @put(
        "/{credential_ref:str}",
        opt=need(Permission.CREDENTIALS_WRITE),
        summary="Rotate a credential's secret",
    )
    async def rotate_credential(
        self,
        db: Db,
        caller: Caller,
        gateway: Gw,
        credential_ref: FromPath[str],
        data: JSONBody[CredentialSecret],
    ) -> CredentialOut:
        credential = await credential_service.get_credential(db, credential_ref)
        await credential_service.rotate_credential(db, caller.actor, gateway.cipher, credential, data.secret)
        users = await credential_service.credential_users(db, [credential], gateway.settings.models)
        return credential_out(credential, users[credential.id])

    @delete(
        "/{credential_ref:str}", opt=need(Permission.CREDENTIALS_WRITE), summary="Delete an unused credential"
    )
    async def delete_credential(
        self, db: Db, caller: Caller, gateway: Gw, credential_ref: FromPath[str]
    ) -> None:
        credential = await credential_service.get_credential(db, credential_ref)
        await credential_service.delete_credential(
            db, caller.actor, credential, config_models=gateway.settings.models
        )


ROUTES: list[ControllerRouterHandler] = [ModelController, DeploymentController, CredentialController]
