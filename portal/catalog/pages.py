"""Portal pages of the catalog domain (issue 7): ``/models`` (config models read-only, database models
editable), a model's page with its deployments, and a deployment's edit page.

Every deployment shows its live state from the running router: usable, cooling down (until when),
or unusable (the catalog's reason). Writes go through :mod:`portal.catalog.service` (the rules the
admin API uses); a domain error is shown inline in the form, never as a 500.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
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
from portal.catalog import service
from portal.catalog.api import DeploymentOut, ModelOut, config_model_out, deployment_out, model_out
from portal.catalog.credentials import get_credential
from portal.config import ModelConfig
from portal.db.models import Deployment, Model, Provider
from portal.errors import DomainError, NotFoundError, ValidationFailedError
from portal.proxy.gateway import Gateway
from portal.web.forms import refused
from portal.web.pages import Answer, flash, page_caller, redirect, render

__all__ = ["PAGES"]

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
_MODEL_FORMS = {
    "model": ("catalog/_model_form.html", "#model-form"),
    "deployment": ("catalog/_deployment_add_form.html", "#deployment-add-form"),
}
_DEPLOYMENT_TEXT = ("name", "api_base", "api_version", "region", "credential_ref", "tenant")


def _gateway(request: Request[Any, Any, Any]) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def _config_models(request: Request[Any, Any, Any]) -> dict[str, ModelConfig]:
    return {m.name: m for m in _gateway(request).settings.models}


def _health(request: Request[Any, Any, Any]) -> dict[str, dict[str, str]]:
    """Live state per deployment id: ``cooling`` (until, UTC) or ``problem`` from the routing catalog."""
    gateway = _gateway(request)
    now = dt.datetime.now(dt.UTC)
    state: dict[str, dict[str, str]] = {}
    for entry in gateway.catalog.models.values():
        for info in [*entry.deployments, *(d for ds in entry.overrides.values() for d in ds)]:
            if info.problem:
                state.setdefault(info.id, {})["problem"] = info.problem
    for dep_id, left in gateway.router.cooldown_state().items():
        until = now + dt.timedelta(seconds=left)
        state.setdefault(dep_id, {})["cooling"] = until.strftime("%Y-%m-%d %H:%M:%S UTC")
    return state


def _error_context(error: DomainError) -> dict[str, Any]:
    fields = error.fields if isinstance(error, ValidationFailedError) else {}
    return {"error": error.message, "fields": fields}


async def _catalog(request: Request[Any, Any, Any], db: Db, caller: AdminCaller, q: str) -> list[ModelOut]:
    rows = await service.list_catalog(db, _gateway(request).settings.models, search=q or None, limit=500)
    stored = [r for r in rows if isinstance(r, Model)]
    deployments = await service.model_deployments(db, [m.id for m in stored])
    views: list[ModelOut] = []
    for row in rows:
        if isinstance(row, Model):
            views.append(model_out(row, deployments[row.id], caller))
        else:
            views.append(await config_model_out(db, row, caller))
    return views


async def _list_page(
    request: Request[Any, Any, Any],
    db: Db,
    *,
    q: str = "",
    form: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Template:
    """The catalog page; with ``extra`` (an error), its create form refused (htmx: that form alone)."""
    caller = await page_caller(request)
    context = {
        "models": await _catalog(request, db, caller, q),
        "health": _health(request),
        "q": q,
        "form": form or {"mode": "chat", "enabled": "on"},
        "modes": service.MODES,
        "can_write": caller.can(Permission.CATALOG_WRITE),
        "error": None,
        "fields": {},
        **(extra or {}),
    }
    if extra:
        return await refused(
            request,
            "catalog/models.html",
            context,
            fragment="catalog/_model_create_form.html",
            target="#model-create-form",
            status_code=status_code,
        )
    return await render(
        request, "catalog/models.html", context, fragment="catalog/_models.html", status_code=status_code
    )


async def _done(request: Request[Any, Any, Any], db: Db, message: str, url: str) -> Answer:
    """Commit the change, then flash ``message`` and go to ``url`` (the flash is written through another
    connection, which SQLite would block while this transaction holds its write lock)."""
    await db.commit()
    await flash(request, message)
    return redirect(request, url)


@get("/models", name="catalog:models", opt=page(Permission.CATALOG_READ))
async def models_page(request: Request[Any, Any, Any], db: Db, q: FromQuery[str] = "") -> Template:
    """The catalog: every model with its deployments, prices and live health."""
    return await _list_page(request, db, q=q.strip())


def _fallbacks(value: str) -> list[str]:
    return [f.strip() for f in value.split(",") if f.strip()]


@post("/models", name="catalog:create-model", opt=page(Permission.CATALOG_WRITE))
async def create_model(request: Request[Any, Any, Any], db: Db, data: Form) -> Answer:
    """Create a database model from the form; errors inline (422/409)."""
    caller = await page_caller(request)
    try:
        model = await service.create_model(
            db,
            caller.actor,
            name=data.get("name", "").strip(),
            description=data.get("description", "").strip(),
            mode=data.get("mode", "chat"),
            enabled=data.get("enabled") == "on",
            fallbacks=_fallbacks(data.get("fallbacks", "")),
            reserved=_config_models(request),
        )
    except DomainError as exc:
        await db.rollback()
        return await _list_page(
            request, db, form=data, extra=_error_context(exc), status_code=exc.status_code
        )
    return await _done(
        request, db, f"Model {model.name} created; add a deployment to serve it.", f"/models/{model.id}"
    )


async def _model_or_404(db: Db, ref: str) -> Model:
    try:
        return await service.get_model(db, ref)
    except NotFoundError as exc:
        raise NotFoundException(exc.message) from None


async def _detail_page(
    request: Request[Any, Any, Any],
    db: Db,
    ref: str,
    *,
    model_form: dict[str, str] | None = None,
    deployment_form: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    status_code: int = 200,
    refused_form: str | None = None,
) -> Template:
    """A model's page; with ``refused_form`` (``model`` or ``deployment``), that form refused (htmx: it
    alone, in place)."""
    caller = await page_caller(request)
    configured = _config_models(request).get(ref)
    if configured is not None:
        view = await config_model_out(db, configured, caller)
    else:
        model = await _model_or_404(db, ref)
        view = model_out(model, (await service.model_deployments(db, [model.id]))[model.id], caller)
    context = {
        "model": view,
        "health": _health(request),
        "modes": service.MODES,
        "providers": [p.value for p in Provider],
        "can_write": caller.can(Permission.CATALOG_WRITE) and view.source != "config",
        "model_form": model_form
        or {
            "description": view.description,
            "mode": view.mode,
            "enabled": "on" if view.enabled else "",
            "fallbacks": ", ".join(view.fallbacks),
            "name": view.name,
        },
        "dep_form": deployment_form or {"provider": "openai", "weight": "1", "enabled": "on"},
        "error": None,
        "fields": {},
        "dep_error": None,
        "dep_fields": {},
        "model_error": None,
        **(extra or {}),
    }
    if refused_form is not None and context["can_write"]:
        fragment, target = _MODEL_FORMS[refused_form]
        return await refused(
            request, "catalog/model.html", context, fragment=fragment, target=target, status_code=status_code
        )
    return await render(request, "catalog/model.html", context, status_code=status_code)


@get("/models/{model_ref:str}", name="catalog:model", opt=page(Permission.CATALOG_READ))
async def model_page(request: Request[Any, Any, Any], db: Db, model_ref: FromPath[str]) -> Template:
    """One model: its settings and deployments (edit forms for database models)."""
    return await _detail_page(request, db, model_ref)


@post("/models/{model_ref:str}", name="catalog:update-model", opt=page(Permission.CATALOG_WRITE))
async def update_model(
    request: Request[Any, Any, Any], db: Db, model_ref: FromPath[str], data: Form
) -> Answer:
    """Change a database model's settings."""
    caller = await page_caller(request)
    reserved = _config_models(request)
    try:
        if model_ref in reserved:
            raise service.read_only(model_ref)
        model = await _model_or_404(db, model_ref)
        changes: dict[str, Any] = {
            "name": data.get("name", model.name).strip(),
            "description": data.get("description", "").strip(),
            "mode": data.get("mode", model.mode),
            "enabled": data.get("enabled") == "on",
            "fallbacks": _fallbacks(data.get("fallbacks", "")),
        }
        await service.update_model(db, caller.actor, model, changes, reserved=reserved)
    except DomainError as exc:
        await db.rollback()
        extra = {"model_error": exc.message, "fields": _error_context(exc)["fields"]}
        return await _detail_page(
            request,
            db,
            model_ref,
            model_form=data,
            extra=extra,
            status_code=exc.status_code,
            refused_form="model",
        )
    return await _done(request, db, f"Model {model.name} saved.", f"/models/{model.id}")


@get(
    "/models/{model_ref:str}/delete", name="catalog:confirm-delete-model", opt=page(Permission.CATALOG_WRITE)
)
async def confirm_delete_model(request: Request[Any, Any, Any], db: Db, model_ref: FromPath[str]) -> Template:
    """Ask before deleting a model and its deployments."""
    model = await _model_or_404(db, model_ref)
    deployments = (await service.model_deployments(db, [model.id]))[model.id]
    return await render(
        request, "catalog/confirm_delete.html", {"model": model, "deployments": len(deployments)}
    )


@post("/models/{model_ref:str}/delete", name="catalog:delete-model", opt=page(Permission.CATALOG_WRITE))
async def delete_model(request: Request[Any, Any, Any], db: Db, model_ref: FromPath[str]) -> Answer:
    """Delete a database model with its deployments (409 inline while it is another's fallback)."""
    caller = await page_caller(request)
    model = await _model_or_404(db, model_ref)
    name = model.name
    try:
        await service.delete_model(db, caller.actor, model)
    except DomainError as exc:
        await db.rollback()
        return await _detail_page(
            request, db, model_ref, extra=_error_context(exc), status_code=exc.status_code
        )
    return await _done(request, db, f"Model {name} deleted.", "/models")


def _deployment_fields(data: dict[str, str]) -> dict[str, Any]:
    """The form's deployment fields, typed as the service expects (blank text = not set)."""
    fields: dict[str, Any] = {
        "provider": data.get("provider", "").strip(),
        "upstream_model": data.get("upstream_model", "").strip(),
        "enabled": data.get("enabled") == "on",
    }
    for name in _DEPLOYMENT_TEXT:
        value = data.get(name, "").strip()
        fields[name] = value or None
    if fields["name"] is None:
        del fields["name"]
    errors: dict[str, str] = {}
    for name in ("input_price_per_mtok", "output_price_per_mtok"):
        value = data.get(name, "").strip()
        try:
            fields[name] = str(Decimal(value)) if value else None
        except InvalidOperation:
            errors[name] = "a number (price per million tokens)"
    for name, kind in (("weight", int), ("max_retries", int), ("timeout_s", float)):
        value = data.get(name, "").strip()
        if not value:
            continue
        try:
            fields[name] = kind(value)
        except ValueError:
            errors[name] = "a number"
    if errors:
        raise ValidationFailedError("invalid deployment", errors)
    return fields


def _dep_error(exc: DomainError) -> dict[str, Any]:
    fields = exc.fields if isinstance(exc, ValidationFailedError) else {}
    return {"dep_error": exc.message, "dep_fields": fields}


@post(
    "/models/{model_ref:str}/deployments",
    name="catalog:create-deployment",
    opt=page(Permission.CATALOG_WRITE),
)
async def create_deployment(
    request: Request[Any, Any, Any], db: Db, model_ref: FromPath[str], data: Form
) -> Answer:
    """Add a deployment to a database model."""
    caller = await page_caller(request)
    try:
        if model_ref in _config_models(request):
            raise service.read_only(model_ref)
        model = await _model_or_404(db, model_ref)
        deployment = await service.create_deployment(db, caller.actor, model, **_deployment_fields(data))
    except DomainError as exc:
        await db.rollback()
        return await _detail_page(
            request,
            db,
            model_ref,
            deployment_form=data,
            extra=_dep_error(exc),
            status_code=exc.status_code,
            refused_form="deployment",
        )
    return await _done(request, db, f"Deployment {deployment.name} added.", f"/models/{model.id}")


async def _visible_deployment(db: Db, caller: AdminCaller, ref: str) -> Deployment:
    try:
        deployment = await service.get_deployment(db, ref)
        if deployment.tenant_id is not None:
            caller.check_visible(deployment.tenant_id, f"deployment {ref}")
    except NotFoundError as exc:
        raise NotFoundException(exc.message) from None
    return deployment


async def _deployment_view(db: Db, deployment: Deployment) -> DeploymentOut:
    model = await service.get_model(db, deployment.model_id)
    credential = (
        await get_credential(db, deployment.credential_id) if deployment.credential_id is not None else None
    )
    return deployment_out(deployment, model.name, credential)


def _deployment_form(view: DeploymentOut) -> dict[str, str]:
    return {
        "name": view.name,
        "provider": view.provider,
        "upstream_model": view.upstream_model,
        "api_base": view.api_base or "",
        "api_version": view.api_version or "",
        "region": view.region or "",
        "credential_ref": view.credential_ref
        or (f"credential:{view.credential.name}" if view.credential else ""),
        "input_price_per_mtok": view.input_price_per_mtok or "",
        "output_price_per_mtok": view.output_price_per_mtok or "",
        "weight": str(view.weight),
        "timeout_s": str(view.timeout_s),
        "max_retries": str(view.max_retries),
        "tenant": str(view.tenant_id) if view.tenant_id else "",
        "enabled": "on" if view.enabled else "",
    }


async def _deployment_page(
    request: Request[Any, Any, Any],
    db: Db,
    deployment: Deployment,
    *,
    form: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    status_code: int = 200,
    refused_form: bool = False,
) -> Template:
    """A deployment's page; with ``refused_form``, its form refused (htmx: it alone, in place)."""
    view = await _deployment_view(db, deployment)
    caller = await page_caller(request)
    context = {
        "dep": view,
        "model_id": deployment.model_id,
        "health": _health(request).get(view.id, {}),
        "providers": [p.value for p in Provider],
        "dep_form": form or _deployment_form(view),
        "can_write": caller.can(Permission.CATALOG_WRITE),
        "dep_error": None,
        "dep_fields": {},
        **(extra or {}),
    }
    if refused_form and context["can_write"]:
        return await refused(
            request,
            "catalog/deployment.html",
            context,
            fragment="catalog/_deployment_form.html",
            target="#deployment-form",
            status_code=status_code,
        )
    return await render(request, "catalog/deployment.html", context, status_code=status_code)


@get("/deployments/{deployment_id:str}", name="catalog:deployment", opt=page(Permission.CATALOG_READ))
async def deployment_page(request: Request[Any, Any, Any], db: Db, deployment_id: FromPath[str]) -> Template:
    """One deployment: its settings (an edit form for writers) and live state."""
    caller = await page_caller(request)
    return await _deployment_page(request, db, await _visible_deployment(db, caller, deployment_id))


@post(
    "/deployments/{deployment_id:str}", name="catalog:update-deployment", opt=page(Permission.CATALOG_WRITE)
)
async def update_deployment(
    request: Request[Any, Any, Any], db: Db, deployment_id: FromPath[str], data: Form
) -> Answer:
    """Change a deployment (blank optional fields are cleared)."""
    caller = await page_caller(request)
    deployment = await _visible_deployment(db, caller, deployment_id)
    try:
        fields = _deployment_fields(data)
        fields.setdefault("name", deployment.name)
        await service.update_deployment(db, caller.actor, deployment, fields)
    except DomainError as exc:
        await db.rollback()
        deployment = await _visible_deployment(db, caller, deployment_id)
        return await _deployment_page(
            request,
            db,
            deployment,
            form=data,
            extra=_dep_error(exc),
            status_code=exc.status_code,
            refused_form=True,
        )
    return await _done(request, db, f"Deployment {deployment.name} saved.", f"/models/{deployment.model_id}")


@post(
    "/deployments/{deployment_id:str}/delete",
    name="catalog:delete-deployment",
    opt=page(Permission.CATALOG_WRITE),
)
async def delete_deployment(request: Request[Any, Any, Any], db: Db, deployment_id: FromPath[str]) -> Answer:
    """Remove a deployment."""
    caller = await page_caller(request)
    deployment = await _visible_deployment(db, caller, deployment_id)
    model_id, name = deployment.model_id, deployment.name
    try:
        await service.delete_deployment(db, caller.actor, deployment)
    except DomainError as exc:
        await db.rollback()
        deployment = await _visible_deployment(db, caller, deployment_id)
        return await _deployment_page(
            request, db, deployment, extra=_dep_error(exc), status_code=exc.status_code
        )
    return await _done(request, db, f"Deployment {name} deleted.", f"/models/{model_id}")


PAGES: list[ControllerRouterHandler] = [
    models_page,
    create_model,
    model_page,
    update_model,
    confirm_delete_model,
    delete_model,
    create_deployment,
    deployment_page,
    update_deployment,
    delete_deployment,
]
