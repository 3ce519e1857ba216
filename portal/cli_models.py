"""``portal models``: the model catalog (create, list, get, update, delete models) and
``portal models deployments`` (add, list, update, remove the upstreams that serve a model).

Models declared in the configuration file are listed (source ``config``) but read-only here. A change
reaches running instances' routing catalogs at once over Redis (or within ``catalog_refresh_s``).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncSession

from portal import audit
from portal.catalog import service
from portal.cli_common import (
    CLEAR,
    JSON_OBJECT,
    apply_changes,
    change,
    creation,
    current_settings,
    emit,
    emit_page,
    fail,
    json_option,
    list_options,
    read,
    row_view,
)
from portal.config import ModelConfig
from portal.db.models import Deployment, Model, Provider

__all__ = ["models"]

COLUMNS = ("id", "name", "mode", "enabled", "source", "deployments", "fallbacks")
DEPLOYMENT_COLUMNS = (
    "id",
    "name",
    "provider",
    "upstream_model",
    "api_base",
    "weight",
    "enabled",
    "tenant_id",
)
MODE = click.Choice(list(service.MODES))
PROVIDER = click.Choice([p.value for p in Provider])


class _Price(click.ParamType[Any]):
    name = "USD|none"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        if value.lower() == "none":
            return CLEAR
        try:
            price = Decimal(value)
        except InvalidOperation:
            self.fail(f"{value!r} is not a decimal number such as 0.15", param, ctx)
        if price < 0 or not price.is_finite():
            self.fail("a price of 0 or more (USD per million tokens)", param, ctx)
        return str(price)


PRICE = _Price()


def _reserved() -> list[str]:
    return [m.name for m in current_settings().models]


def deployment_view(deployment: Deployment) -> dict[str, Any]:
    return row_view(deployment)


def _config_view(model: ModelConfig) -> dict[str, Any]:
    return {
        "id": None,
        "name": model.name,
        "description": model.description,
        "mode": model.mode,
        "enabled": True,
        "fallbacks": list(model.fallbacks),
        "source": "config",
        "deployments": [
            {
                "provider": d.provider,
                "upstream_model": d.model,
                "api_base": d.api_base,
                "region": d.region,
                "credential_ref": d.api_key,
                "weight": d.weight,
                "tenant": d.tenant,
            }
            for d in model.deployments
        ],
    }


async def _model_view(session: AsyncSession, model: Model) -> dict[str, Any]:
    found = await service.model_deployments(session, [model.id])
    return row_view(model, deployments=[deployment_view(d) for d, _ in found[model.id]])


def _model_fields(fn: Any) -> Any:
    for option in reversed(
        [
            click.option("--description", default=None),
            click.option("--mode", type=MODE, default=None, help="chat (default), embedding or completion."),
            click.option("--enabled/--disabled", "enabled", default=None),
            click.option(
                "--fallback",
                "fallbacks",
                multiple=True,
                help="A model tried when every deployment fails (repeat, in order).",
            ),
            click.option("--metadata", type=JSON_OBJECT, default=None, help="A JSON object (none: {})."),
        ]
    ):
        fn = option(fn)
    return fn


def _deployment_fields(fn: Any) -> Any:
    for option in reversed(
        [
            click.option("--name", default=None, help="Deployment name (default MODEL-PROVIDER)."),
            click.option("--api-base", default=None, help="The upstream's base URL (none: default)."),
            click.option("--api-version", default=None),
            click.option("--region", default=None),
            click.option("--credential", default=None, help="A stored credential's name or id."),
            click.option("--credential-ref", default=None, help="env:NAME (a secret in the environment)."),
            click.option(
                "--input-price", "input_price_per_mtok", type=PRICE, default=None, help="USD / Mtok."
            ),
            click.option(
                "--output-price", "output_price_per_mtok", type=PRICE, default=None, help="USD / Mtok."
            ),
            click.option("--weight", type=click.IntRange(0, 1_000_000), default=None),
            click.option(
                "--timeout", "timeout_s", type=click.FloatRange(0, 3600, min_open=True), default=None
            ),
            click.option("--max-retries", type=click.IntRange(0, 10), default=None),
            click.option("--tenant", default=None, help="Only for this tenant (id or slug): an override."),
            click.option("--enabled/--disabled", "enabled", default=None),
        ]
    ):
        fn = option(fn)
    return fn


def _none_strings(values: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """Text options given as ``none`` clear the value."""
    return {
        k: (CLEAR if k in names and isinstance(v, str) and v.lower() == "none" else v)
        for k, v in values.items()
    }


_CLEARABLE = ("api_base", "api_version", "region", "credential", "credential_ref", "tenant")


@click.group()
def models() -> None:
    """Manage the model catalog: public model names and their deployments."""


@models.command("create")
@click.argument("name")
@_model_fields
@click.option("--provider", type=PROVIDER, default=None, help="Also add a deployment on this provider.")
@click.option("--upstream-model", default=None, help="The provider's model id (default: NAME).")
@click.option("--api-base", default=None)
@click.option("--credential-ref", default=None, help="env:NAME for the deployment's secret.")
@click.option("--input-price", "input_price_per_mtok", type=PRICE, default=None, help="USD / Mtok.")
@click.option("--output-price", "output_price_per_mtok", type=PRICE, default=None, help="USD / Mtok.")
@json_option
def create(
    name: str,
    fallbacks: tuple[str, ...],
    provider: str | None,
    upstream_model: str | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Create the model NAME, with one deployment when --provider is given."""
    deployment_options = {
        k: options.pop(k)
        for k in ("api_base", "credential_ref", "input_price_per_mtok", "output_price_per_mtok")
    }
    if provider is None and any(v is not None for v in deployment_options.values()):
        raise click.UsageError("deployment options need --provider")
    reserved = _reserved()

    async def work(session: AsyncSession, actor: audit.Actor) -> dict[str, Any]:
        model = await service.create_model(
            session, actor, name=name, fallbacks=fallbacks, reserved=reserved, **creation(**options)
        )
        if provider is not None:
            await service.create_deployment(
                session,
                actor,
                model,
                provider=provider,
                upstream_model=upstream_model or name,
                **creation(**deployment_options),
            )
        return await _model_view(session, model)

    emit(change("models create", work), as_json=as_json)


@models.command("list")
@click.option("--search", default=None, help="Part of the name.")
@click.option("--enabled/--disabled", "enabled", default=None)
@list_options
@json_option
def list_(search: str | None, enabled: bool | None, limit: int, after: str | None, as_json: bool) -> None:
    """List models: the configuration file's first, then the database's."""
    config_models = current_settings().models

    async def work(session: AsyncSession) -> tuple[list[dict[str, Any]], str | None]:
        rows = await service.list_catalog(
            session, config_models, search=search, enabled=enabled, after=after, limit=limit
        )
        shown = rows[:limit]
        views = []
        for row in shown:
            views.append(
                _config_view(row) if isinstance(row, ModelConfig) else await _model_view(session, row)
            )
        cursor = None
        if len(rows) > limit and shown:
            last = shown[-1]
            cursor = f"config:{last.name}" if isinstance(last, ModelConfig) else str(last.id)
        return views, cursor

    views, cursor = read(work)
    table = [{**v, "deployments": len(v["deployments"])} for v in views]
    emit_page(views if as_json else table, cursor, as_json=as_json, columns=COLUMNS)


@models.command("get")
@click.argument("ref")
@json_option
def get(ref: str, as_json: bool) -> None:
    """Show the model REF (id or name) and its deployments."""
    config = {m.name: m for m in current_settings().models}

    async def work(session: AsyncSession) -> dict[str, Any]:
        if ref in config:
            return _config_view(config[ref])
        return await _model_view(session, await service.get_model(session, ref))

    emit(read(work), as_json=as_json)


@models.command("update")
@click.argument("ref")
@click.option("--name", default=None, help="A new public name.")
@_model_fields
@click.option("--no-fallbacks", is_flag=True, help="Remove every fallback.")
@json_option
def update(ref: str, fallbacks: tuple[str, ...], no_fallbacks: bool, as_json: bool, **options: Any) -> None:
    """Change the model REF (id or name): only the options given."""
    changes = apply_changes(**options)
    if fallbacks and no_fallbacks:
        raise click.UsageError("give --fallback or --no-fallbacks, not both")
    if fallbacks or no_fallbacks:
        changes["fallbacks"] = list(fallbacks)
    reserved = _reserved()
    if ref in reserved:
        fail(service.read_only(ref).message)

    async def work(session: AsyncSession, actor: audit.Actor) -> dict[str, Any]:
        model = await service.get_model(session, ref)
        await service.update_model(session, actor, model, changes, reserved=reserved)
        return await _model_view(session, model)

    emit(change("models update", work), as_json=as_json)


@models.command("delete")
@click.argument("ref")
@click.confirmation_option(prompt="Delete the model with its deployments?")
@json_option
def delete(ref: str, as_json: bool) -> None:
    """Delete the model REF (id or name) with its deployments."""
    if ref in _reserved():
        fail(service.read_only(ref).message)

    async def work(session: AsyncSession, actor: audit.Actor) -> dict[str, Any]:
        model = await service.get_model(session, ref)
        view = {"deleted": True, "id": str(model.id), "name": model.name}
        await service.delete_model(session, actor, model)
        return view

    emit(change("models delete", work), as_json=as_json)


@models.group("deployments")
def deployments() -> None:
    """The deployments (upstreams) that serve a model."""


@deployments.command("add")
@click.argument("model_ref")
@click.option("--provider", type=PROVIDER, required=True)
@click.option("--upstream-model", required=True, help="The provider's model id.")
@_deployment_fields
@json_option
def add_deployment(model_ref: str, as_json: bool, **options: Any) -> None:
    """Add a deployment to the model MODEL_REF (id or name)."""
    if model_ref in _reserved():
        fail(service.read_only(model_ref).message)
    fields = creation(**_none_strings(options, _CLEARABLE))

    async def work(session: AsyncSession, actor: audit.Actor) -> dict[str, Any]:
        model = await service.get_model(session, model_ref)
        return deployment_view(await service.create_deployment(session, actor, model, **fields))

    emit(change("models deployments add", work), as_json=as_json)


@deployments.command("list")
@click.argument("model_ref")
@json_option
def list_deployments(model_ref: str, as_json: bool) -> None:
    """List the deployments of the model MODEL_REF (id or name)."""
    config = {m.name: m for m in current_settings().models}

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        if model_ref in config:
            views: list[dict[str, Any]] = _config_view(config[model_ref])["deployments"]
            return views
        model = await service.get_model(session, model_ref)
        found = await service.model_deployments(session, [model.id])
        return [deployment_view(d) for d, _ in found[model.id]]

    emit_page(read(work), None, as_json=as_json, columns=DEPLOYMENT_COLUMNS)


@deployments.command("update")
@click.argument("deployment_id")
@click.option("--provider", type=PROVIDER, default=None)
@click.option("--upstream-model", default=None)
@_deployment_fields
@json_option
def update_deployment(deployment_id: str, as_json: bool, **options: Any) -> None:
    """Change the deployment DEPLOYMENT_ID: only the options given (none clears a value)."""
    changes = apply_changes(**_none_strings(options, _CLEARABLE))

    async def work(session: AsyncSession, actor: audit.Actor) -> dict[str, Any]:
        deployment = await service.get_deployment(session, deployment_id)
        return deployment_view(await service.update_deployment(session, actor, deployment, changes))

    emit(change("models deployments update", work), as_json=as_json)


@deployments.command("remove")
@click.argument("deployment_id")
@json_option
def remove_deployment(deployment_id: str, as_json: bool) -> None:
    """Remove the deployment DEPLOYMENT_ID."""

    async def work(session: AsyncSession, actor: audit.Actor) -> dict[str, Any]:
        deployment = await service.get_deployment(session, deployment_id)
        view = {"deleted": True, "id": str(deployment.id), "name": deployment.name}
        await service.delete_deployment(session, actor, deployment)
        return view

    emit(change("models deployments remove", work), as_json=as_json)
