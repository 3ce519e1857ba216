"""Catalog rules: public models, the deployments that serve them, and encrypted provider credentials.

Every change is audited in the caller's transaction and notes ``catalog=True``, so after the commit
the proxy reloads its routing catalog (here at once, on other instances through Redis or within
``catalog_refresh_s``). Models declared in the YAML config are read-only: their names are passed in as
``reserved`` and any attempt to change or shadow them is a conflict. Stored credentials live in
:mod:`portal.catalog.credentials`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Iterable, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from portal import audit
from portal.audit.service import snapshot
from portal.catalog.credentials import get_credential
from portal.config import ModelConfig
from portal.db.effects import note
from portal.db.models import Credential, Deployment, Model, Provider
from portal.errors import ConflictError, NotFoundError, ValidationFailedError
from portal.tenants.service import get_tenant

__all__ = [
    "DEPLOYMENT_FIELDS",
    "MODEL_FIELDS",
    "MODES",
    "create_deployment",
    "create_model",
    "delete_deployment",
    "delete_model",
    "ensure_model",
    "get_deployment",
    "get_model",
    "list_catalog",
    "list_models",
    "model_deployments",
    "read_only",
    "update_deployment",
    "update_model",
]

MODES = ("chat", "embedding", "completion")
MODEL_FIELDS = frozenset({"name", "description", "mode", "enabled", "fallbacks", "metadata"})
DEPLOYMENT_FIELDS = frozenset(
    {
        "name",
        "provider",
        "upstream_model",
        "api_base",
        "api_version",
        "region",
        "credential",
        "credential_ref",
        "input_price_per_mtok",
        "output_price_per_mtok",
        "weight",
        "timeout_s",
        "max_retries",
        "tenant",
        "enabled",
        "extra",
    }
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$")
_ENV_REF = re.compile(r"^env:[A-Za-z_][A-Za-z0-9_]*$")


def _as_uuid(ref: str | uuid.UUID) -> uuid.UUID | None:
    if isinstance(ref, uuid.UUID):
        return ref
    try:
        return uuid.UUID(ref)
    except ValueError:
        return None


def read_only(name: str) -> ConflictError:
    """The conflict raised when a config-file model would be changed through the API."""
    return ConflictError(
        f"model {name!r} is declared in the configuration file; it is read-only here (change the file)"
    )


# --- models -----------------------------------------------------------------------------------------


async def get_model(session: AsyncSession, ref: str | uuid.UUID) -> Model:
    """The database model with id or name ``ref``, or :class:`NotFoundError`."""
    ident = _as_uuid(ref)
    model = await session.get(Model, ident) if ident is not None else None
    if model is None and isinstance(ref, str):
        model = await session.scalar(select(Model).where(Model.name == ref))
    if model is None:
        raise NotFoundError(f"model {ref!s} does not exist")
    return model


async def list_models(
    session: AsyncSession,
    *,
    search: str | None = None,
    enabled: bool | None = None,
    after: uuid.UUID | None = None,
    limit: int = 100,
) -> Sequence[Model]:
    """Database models by id, up to ``limit + 1`` rows after the cursor ``after``."""
    query = select(Model).order_by(Model.id).limit(limit + 1)
    if search:
        query = query.where(Model.name.ilike(f"%{search}%"))
    if enabled is not None:
        query = query.where(Model.enabled.is_(enabled))
    if after is not None:
        query = query.where(Model.id > after)
    return (await session.scalars(query)).all()


async def list_catalog(
    session: AsyncSession,
    config_models: Sequence[ModelConfig],
    *,
    search: str | None = None,
    enabled: bool | None = None,
    after: str | None = None,
    limit: int = 100,
) -> list[Model | ModelConfig]:
    """Config models (in file order) then database models (by id), ``limit + 1`` at most.

    ``after`` is the cursor value of the last item seen: ``config:<name>`` or a database model id.
    """
    configs = [m for m in config_models if not search or search.lower() in m.name.lower()]
    if enabled is False:
        configs = []
    db_after: uuid.UUID | None = None
    if after is not None and after.startswith("config:"):
        names = [m.name for m in configs]
        name = after.removeprefix("config:")
        configs = configs[names.index(name) + 1 :] if name in names else []
    elif after is not None:
        db_after = _as_uuid(after)
        if db_after is None:
            raise ValidationFailedError("invalid cursor", {"cursor": "use next_cursor from a previous page"})
        configs = []
    items: list[Model | ModelConfig] = list(configs[: limit + 1])
    if len(items) <= limit:
        items += await list_models(
            session, search=search, enabled=enabled, after=db_after, limit=limit - len(items)
        )
    return items


def _model_errors(changes: dict[str, Any]) -> dict[str, str]:
    errors: dict[str, str] = {}
    unknown = set(changes) - MODEL_FIELDS
    errors.update(dict.fromkeys(sorted(unknown), "not a model field"))
    if "name" in changes and not _NAME.match(changes["name"] or ""):
        errors["name"] = "1-200 letters, digits and . _ : / @ + -, starting with a letter or digit"
    if "mode" in changes and changes["mode"] not in MODES:
        errors["mode"] = f"one of {', '.join(MODES)}"
    return errors


async def _check_fallbacks(
    session: AsyncSession, name: str, fallbacks: Sequence[str], reserved: Collection[str]
) -> None:
    problem = None
    if len(set(fallbacks)) != len(fallbacks):
        problem = "each model at most once"
    elif name in fallbacks:
        problem = "a model cannot be its own fallback"
    else:
        known = set(reserved)
        if fallbacks:
            rows = await session.scalars(select(Model.name).where(Model.name.in_(list(fallbacks))))
            known.update(rows.all())
        missing = [f for f in fallbacks if f not in known]
        if missing:
            problem = f"unknown model(s): {', '.join(missing)}"
    if problem:
        raise ValidationFailedError("invalid fallbacks", {"fallbacks": problem})


async def create_model(
    session: AsyncSession,
    actor: audit.Actor,
    *,
    name: str,
    description: str = "",
    mode: str = "chat",
    enabled: bool = True,
    fallbacks: Sequence[str] = (),
    metadata: dict[str, Any] | None = None,
    reserved: Collection[str] = (),
) -> Model:
    """Create a public model (no deployments yet); ``model.created`` audited.

    ``reserved``: the names of the config file's models (a conflict).
    """
    if errors := _model_errors({"name": name, "mode": mode}):
        raise ValidationFailedError("invalid model", errors)
    if name in reserved:
        raise read_only(name)
    if await session.scalar(select(Model.id).where(Model.name == name)) is not None:
        raise ConflictError(f"model {name!r} already exists")
    await _check_fallbacks(session, name, list(fallbacks), reserved)
    model = Model(
        name=name,
        description=description,
        mode=mode,
        enabled=enabled,
        fallbacks=list(fallbacks),
        metadata_=dict(metadata or {}),
        source="db",
    )
    session.add(model)
    await session.flush()
    await audit.record(
        session, actor, "model.created", target_type="model", target_id=model.id, after=snapshot(model)
    )
    note(session, catalog=True)
    return model


async def update_model(
    session: AsyncSession,
    actor: audit.Actor,
    model: Model,
    changes: dict[str, Any],
    *,
    reserved: Collection[str] = (),
) -> Model:
    """Change fields of ``model`` (``model.updated`` audited with before and after)."""
    if not changes:
        return model
    if model.source == "config":
        raise read_only(model.name)
    if errors := _model_errors(changes):
        raise ValidationFailedError("invalid model", errors)
    name = changes.get("name", model.name)
    if name != model.name:
        if name in reserved:
            raise read_only(name)
        if await session.scalar(select(Model.id).where(Model.name == name)) is not None:
            raise ConflictError(f"model {name!r} already exists")
    if "fallbacks" in changes:
        await _check_fallbacks(session, name, list(changes["fallbacks"] or ()), reserved)
    before = snapshot(model)
    for field, value in changes.items():
        if field == "metadata":
            model.metadata_ = dict(value or {})
        elif field == "fallbacks":
            model.fallbacks = list(value or ())
        else:
            setattr(model, field, value)
    await session.flush()
    await audit.record(
        session,
        actor,
        "model.updated",
        target_type="model",
        target_id=model.id,
        before=before,
        after=snapshot(model),
    )
    note(session, catalog=True)
    return model


async def delete_model(session: AsyncSession, actor: audit.Actor, model: Model) -> None:
    """Delete ``model`` with its deployments (``model.deleted`` audited); 409 while another model
    names it as a fallback."""
    if model.source == "config":
        raise read_only(model.name)
    users = [
        m.name
        for m in (await session.scalars(select(Model).where(Model.id != model.id))).all()
        if model.name in (m.fallbacks or ())
    ]
    if users:
        raise ConflictError(
            f"model {model.name!r} is a fallback of {', '.join(sorted(users))}; remove it there first"
        )
    deployments = (await session.scalars(select(Deployment).where(Deployment.model_id == model.id))).all()
    before = {**snapshot(model), "deployments": [snapshot(d) for d in deployments]}
    for deployment in deployments:
        await session.delete(deployment)
    await session.delete(model)
    await session.flush()
    await audit.record(
        session, actor, "model.deleted", target_type="model", target_id=before["id"], before=before
    )
    note(session, catalog=True)


async def ensure_model(
    session: AsyncSession,
    actor: audit.Actor,
    *,
    name: str,
    provider: str,
    upstream_model: str,
    input_price_per_mtok: Decimal | None = None,
    output_price_per_mtok: Decimal | None = None,
    description: str = "",
) -> Model:
    """The model ``name``, created with one deployment if it does not exist yet."""
    if provider not in set(Provider):
        raise ValidationFailedError("unknown provider", {"provider": f"one of {', '.join(Provider)}"})
    model = await session.scalar(select(Model).where(Model.name == name))
    if model is not None:
        return model
    model = Model(name=name, description=description)
    session.add(model)
    await session.flush()
    deployment = Deployment(
        model_id=model.id,
        name=f"{name}-{provider}",
        provider=provider,
        upstream_model=upstream_model,
        input_price_per_mtok=input_price_per_mtok,
        output_price_per_mtok=output_price_per_mtok,
    )
    session.add(deployment)
    await session.flush()
    await audit.record(
        session,
        actor,
        "model.created",
        target_type="model",
        target_id=model.id,
        after={**snapshot(model), "deployments": [snapshot(deployment)]},
    )
    note(session, catalog=True)
    return model


# --- deployments ------------------------------------------------------------------------------------


async def model_deployments(
    session: AsyncSession, model_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[tuple[Deployment, Credential | None]]]:
    """The deployments of each model (by id), each with its stored credential if it has one."""
    ids = list(model_ids)
    out: dict[uuid.UUID, list[tuple[Deployment, Credential | None]]] = {i: [] for i in ids}
    if not ids:
        return out
    rows = await session.execute(
        select(Deployment, Credential)
        .outerjoin(Credential, Credential.id == Deployment.credential_id)
        .where(Deployment.model_id.in_(ids))
        .order_by(Deployment.id)
    )
    for deployment, credential in rows.tuples():
        out[deployment.model_id].append((deployment, credential))
    return out


async def get_deployment(session: AsyncSession, ref: str | uuid.UUID) -> Deployment:
    """The deployment with id ``ref``, or :class:`NotFoundError`."""
    ident = _as_uuid(ref)
    deployment = await session.get(Deployment, ident) if ident is not None else None
    if deployment is None:
        raise NotFoundError(f"deployment {ref!s} does not exist")
    return deployment


async def _apply_deployment(session: AsyncSession, deployment: Deployment, changes: dict[str, Any]) -> None:
    """Validate ``changes`` and set them on ``deployment`` (references resolved)."""
    errors: dict[str, str] = dict.fromkeys(sorted(set(changes) - DEPLOYMENT_FIELDS), "not a deployment field")
    if "provider" in changes and changes["provider"] not in set(Provider):
        errors["provider"] = f"one of {', '.join(Provider)}"
    if "upstream_model" in changes and not (changes["upstream_model"] or "").strip():
        errors["upstream_model"] = "the provider's model id, e.g. gpt-4o-mini"
    base = changes.get("api_base")
    if base is not None and not re.match(r"^https?://[^\s/]+", base):
        errors["api_base"] = "an http(s) URL, e.g. https://api.openai.com/v1"
    for field in ("input_price_per_mtok", "output_price_per_mtok"):
        price = changes.get(field)
        if price is not None and Decimal(price) < 0:
            errors[field] = "must not be negative"
    if "weight" in changes and not 0 <= changes["weight"] <= 1_000_000:
        errors["weight"] = "from 0 (never chosen) to 1000000"
    if "timeout_s" in changes and not 0 < changes["timeout_s"] <= 3600:
        errors["timeout_s"] = "more than 0 and at most 3600 seconds"
    if "max_retries" in changes and not 0 <= changes["max_retries"] <= 10:
        errors["max_retries"] = "from 0 to 10"
    credential_ref = changes.get("credential_ref")
    credential = changes.get("credential")
    if credential is not None and credential_ref is not None:
        errors["credential_ref"] = "give either credential (a stored one) or credential_ref (env:NAME)"
    elif credential_ref is not None:
        if credential_ref.startswith("credential:"):
            credential = credential_ref.removeprefix("credential:")
            credential_ref = None
        elif not _ENV_REF.match(credential_ref):
            errors["credential_ref"] = (
                "env:NAME (an environment variable), or use credential for a stored one"
            )
    stored: Credential | None = None
    if credential is not None and "credential_ref" not in errors:
        try:
            stored = await get_credential(session, credential)
        except NotFoundError:
            errors["credential"] = f"no stored credential {credential!r}"
    tenant_id: uuid.UUID | None = None
    if changes.get("tenant") is not None:
        try:
            tenant_id = (await get_tenant(session, changes["tenant"])).id
        except NotFoundError:
            errors["tenant"] = f"no tenant {changes['tenant']!r}"
    if errors:
        raise ValidationFailedError("invalid deployment", errors)
    for field, value in changes.items():
        if field == "credential" or field == "credential_ref":
            continue
        if field == "tenant":
            deployment.tenant_id = tenant_id
        elif field in {"input_price_per_mtok", "output_price_per_mtok"}:
            setattr(deployment, field, None if value is None else Decimal(value))
        elif field == "extra":
            deployment.extra = dict(value or {})
        else:
            setattr(deployment, field, value)
    if "credential" in changes or "credential_ref" in changes:
        deployment.credential_id = stored.id if stored is not None else None
        deployment.credential_ref = credential_ref


async def create_deployment(
    session: AsyncSession, actor: audit.Actor, model: Model, **fields: Any
) -> Deployment:
    """Add a deployment to ``model`` (``deployment.created`` audited). ``fields``: any of
    :data:`DEPLOYMENT_FIELDS`; ``credential`` is a stored credential's name or id, ``credential_ref``
    an ``env:NAME`` reference, ``tenant`` a tenant id or slug (a per-tenant override)."""
    if model.source == "config":
        raise read_only(model.name)
    missing = {f: "required" for f in ("provider", "upstream_model") if not fields.get(f)}
    if missing:
        raise ValidationFailedError("invalid deployment", missing)
    deployment = Deployment(model_id=model.id, provider=fields["provider"], upstream_model="")
    await _apply_deployment(session, deployment, fields)
    if not deployment.name:
        deployment.name = f"{model.name}-{deployment.provider}"
    session.add(deployment)
    await session.flush()
    await audit.record(
        session,
        actor,
        "deployment.created",
        target_type="deployment",
        target_id=deployment.id,
        tenant_id=deployment.tenant_id,
        after=snapshot(deployment),
    )
    note(session, catalog=True)
    return deployment


async def update_deployment(
    session: AsyncSession, actor: audit.Actor, deployment: Deployment, changes: dict[str, Any]
) -> Deployment:
    """Change fields of ``deployment`` (``deployment.updated`` audited with before and after)."""
    if not changes:
        return deployment
    if deployment.source == "config":
        raise ConflictError("this deployment is declared in the configuration file; it is read-only here")
    before = snapshot(deployment)
    await _apply_deployment(session, deployment, changes)
    await session.flush()
    await audit.record(
        session,
        actor,
        "deployment.updated",
        target_type="deployment",
        target_id=deployment.id,
        tenant_id=deployment.tenant_id,
        before=before,
        after=snapshot(deployment),
    )
    note(session, catalog=True)
    return deployment


async def delete_deployment(session: AsyncSession, actor: audit.Actor, deployment: Deployment) -> None:
    """Remove ``deployment`` (``deployment.deleted`` audited)."""
    if deployment.source == "config":
        raise ConflictError("this deployment is declared in the configuration file; it is read-only here")
    before = snapshot(deployment)
    await session.delete(deployment)
    await session.flush()
    await audit.record(
        session,
        actor,
        "deployment.deleted",
        target_type="deployment",
        target_id=before["id"],
        tenant_id=deployment.tenant_id,
        before=before,
    )
    note(session, catalog=True)
