"""The in-memory catalog the proxy routes with: public models -> deployments, resolved once.

Built from the database (models, deployments, encrypted credentials) merged with the models declared
in the YAML config; rebuilt on change on this instance and periodically (``catalog_refresh_s``) so other
instances follow. Secrets are decrypted here, once, never per request, and never leave the process.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from portal.catalog.crypto import CredentialCipher, InvalidToken
from portal.catalog.prices import default_price
from portal.config import ModelConfig, Settings
from portal.db.models import Credential, Deployment, Model, Tenant
from portal.db.types import to_money
from portal.proxy.providers.base import Target, Usage

__all__ = ["Catalog", "DeploymentInfo", "ModelEntry", "load_catalog"]

log = logging.getLogger(__name__)
_MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class DeploymentInfo:
    """One resolved deployment: its upstream target and its prices (USD per million tokens)."""

    id: str
    model_name: str
    provider: str
    target: Target
    input_price: Decimal
    output_price: Decimal
    priced: bool
    weight: int = 1
    max_retries: int = 2
    tenant_id: uuid.UUID | None = None
    problem: str | None = None
    """Why the deployment cannot be called (e.g. a missing credential), or ``None``."""
    uuid: uuid.UUID | None = None
    """The database id (``None`` for a deployment declared in the config file)."""

    def cost(self, usage: Usage) -> Decimal:
        """Exact cost of ``usage`` at this deployment's prices."""
        total = self.input_price * usage.prompt_tokens + self.output_price * usage.completion_tokens
        return to_money(total / _MILLION)


@dataclass(slots=True)
class ModelEntry:
    """A public model: its shared deployments, per-tenant overrides, and fallbacks."""

    name: str
    mode: str = "chat"
    fallbacks: tuple[str, ...] = ()
    deployments: list[DeploymentInfo] = field(default_factory=list)
    overrides: dict[uuid.UUID, list[DeploymentInfo]] = field(default_factory=dict)
    created: int = 0
    _providers: dict[uuid.UUID | None, frozenset[str]] = field(default_factory=dict, repr=False)

    def deployments_for(self, tenant_id: uuid.UUID | None) -> list[DeploymentInfo]:
        """The deployments that serve ``tenant_id``: its overrides if it has any, else the shared ones."""
        if tenant_id is not None:
            own = self.overrides.get(tenant_id)
            if own:
                return own
        return self.deployments

    def providers_for(self, tenant_id: uuid.UUID | None) -> frozenset[str]:
        """The providers of the deployments that serve ``tenant_id`` (computed once per catalog)."""
        key = tenant_id if tenant_id is not None and tenant_id in self.overrides else None
        providers = self._providers.get(key)
        if providers is None:
            providers = self._providers[key] = frozenset(d.provider for d in self.deployments_for(tenant_id))
        return providers


@dataclass(slots=True)
class Catalog:
    """Every public model by name."""

    models: dict[str, ModelEntry] = field(default_factory=dict)

    def get(self, name: str) -> ModelEntry | None:
        return self.models.get(name)


def _prices(upstream_model: str, inp: Decimal | None, out: Decimal | None) -> tuple[Decimal, Decimal, bool]:
    if inp is not None and out is not None:
        return inp, out, True
    default = default_price(upstream_model)
    if default is None:
        return inp or Decimal(0), out or Decimal(0), inp is not None or out is not None
    return (inp if inp is not None else default[0]), (out if out is not None else default[1]), True


def _resolve_secret(
    ref: str | None,
    credential_id: uuid.UUID | None,
    credentials: dict[str, bytes],
    by_id: dict[uuid.UUID, str],
    cipher: CredentialCipher | None,
) -> tuple[str | None, str | None]:
    """(secret, problem) for a deployment's credential reference."""
    if credential_id is not None:
        ref = f"credential:{by_id.get(credential_id, '')}"
    if not ref:
        return None, None
    kind, _, name = ref.partition(":")
    if kind == "env":
        value = os.environ.get(name)
        return (value, None) if value else (None, f"environment variable {name} is not set")
    if kind == "credential":
        blob = credentials.get(name)
        if blob is None:
            return None, f"credential {name!r} does not exist"
        if cipher is None:
            return None, "no secret key to decrypt credentials"
        try:
            return cipher.decrypt(blob), None
        except InvalidToken:
            return None, f"credential {name!r} cannot be decrypted with the current secret key"
    return None, f"credential reference {ref!r} must be env:NAME or credential:NAME"


def _info(
    *,
    dep_id: str,
    model_name: str,
    provider: str,
    upstream_model: str,
    api_base: str | None,
    api_version: str | None,
    region: str | None,
    secret: str | None,
    problem: str | None,
    timeout_s: float,
    inp: Decimal | None,
    out: Decimal | None,
    weight: int,
    max_retries: int,
    tenant_id: uuid.UUID | None,
) -> DeploymentInfo:
    input_price, output_price, priced = _prices(upstream_model, inp, out)
    if provider == "mock":
        priced = True
    target = Target(
        provider=provider,
        upstream_model=upstream_model,
        api_base=api_base,
        api_key=secret,
        api_version=api_version,
        region=region,
        timeout_s=timeout_s,
        deployment_id=dep_id,
    )
    return DeploymentInfo(
        id=dep_id,
        model_name=model_name,
        provider=provider,
        target=target,
        input_price=input_price,
        output_price=output_price,
        priced=priced,
        weight=max(weight, 0),
        max_retries=max_retries,
        tenant_id=tenant_id,
        problem=problem,
        uuid=_as_uuid(dep_id),
    )


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _add(entry: ModelEntry, info: DeploymentInfo) -> None:
    if info.tenant_id is None:
        entry.deployments.append(info)
    else:
        entry.overrides.setdefault(info.tenant_id, []).append(info)


def _config_models(
    configs: Iterable[ModelConfig],
    tenants: dict[str, uuid.UUID],
    credentials: dict[str, bytes],
    cipher: CredentialCipher | None,
    catalog: Catalog,
) -> None:
    for model in configs:
        entry = ModelEntry(name=model.name, mode=model.mode, fallbacks=tuple(model.fallbacks))
        for index, dep in enumerate(model.deployments):
            tenant_id = None
            problem = None
            if dep.tenant is not None:
                tenant_id = tenants.get(dep.tenant)
                if tenant_id is None:
                    log.warning(
                        "config model %s: tenant %r does not exist; override ignored", model.name, dep.tenant
                    )
                    continue
            secret, problem = _resolve_secret(dep.api_key, None, credentials, {}, cipher)
            _add(
                entry,
                _info(
                    dep_id=f"config:{model.name}:{index}",
                    model_name=model.name,
                    provider=dep.provider,
                    upstream_model=dep.model,
                    api_base=dep.api_base,
                    api_version=dep.api_version,
                    region=dep.region,
                    secret=secret,
                    problem=problem,
                    timeout_s=dep.timeout_s,
                    inp=dep.input_price_per_mtok,
                    out=dep.output_price_per_mtok,
                    weight=dep.weight,
                    max_retries=dep.max_retries,
                    tenant_id=tenant_id,
                ),
            )
        catalog.models[model.name] = entry


async def load_catalog(session: AsyncSession, settings: Settings, cipher: CredentialCipher | None) -> Catalog:
    """Read the catalog from the database and the config (config wins on a name clash)."""
    catalog = Catalog()
    stored = (await session.scalars(select(Credential))).all()
    credentials = {c.name: c.ciphertext for c in stored}
    cred_names = {c.id: c.name for c in stored}
    models = {m.id: m for m in (await session.scalars(select(Model).where(Model.enabled.is_(True)))).all()}
    for row in models.values():
        catalog.models[row.name] = ModelEntry(
            name=row.name,
            mode=row.mode,
            fallbacks=tuple(row.fallbacks or ()),
            created=int(row.created_at.timestamp()),
        )
    deployments = (await session.scalars(select(Deployment).where(Deployment.enabled.is_(True)))).all()
    for dep in deployments:
        owner = models.get(dep.model_id)
        if owner is None:
            continue
        secret, problem = _resolve_secret(
            dep.credential_ref, dep.credential_id, credentials, cred_names, cipher
        )
        _add(
            catalog.models[owner.name],
            _info(
                dep_id=str(dep.id),
                model_name=owner.name,
                provider=dep.provider,
                upstream_model=dep.upstream_model,
                api_base=dep.api_base,
                api_version=dep.api_version,
                region=dep.region,
                secret=secret,
                problem=problem,
                timeout_s=dep.timeout_s,
                inp=dep.input_price_per_mtok,
                out=dep.output_price_per_mtok,
                weight=dep.weight,
                max_retries=dep.max_retries,
                tenant_id=dep.tenant_id,
            ),
        )
    if settings.models:
        slugs = {slug for m in settings.models for d in m.deployments if (slug := d.tenant)}
        tenants: dict[str, uuid.UUID] = {}
        if slugs:
            rows = await session.execute(select(Tenant.slug, Tenant.id).where(Tenant.slug.in_(slugs)))
            tenants = dict(rows.tuples().all())
        for name in {m.name for m in settings.models} & set(catalog.models):
            log.warning("model %s is declared in the config and in the database; the config wins", name)
        _config_models(settings.models, tenants, credentials, cipher, catalog)
    return catalog
