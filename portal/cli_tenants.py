"""``portal tenants``: create, list, get, update and delete tenants (the options of ``/api/tenants``)."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncSession

from portal import audit
from portal.cli_common import (
    JSON_OBJECT,
    apply_changes,
    change,
    creation,
    emit,
    emit_page,
    json_option,
    limit_options,
    list_options,
    page,
    parse_after,
    read,
    row_view,
)
from portal.db.models import Tenant
from portal.tenants import service

__all__ = ["tenants"]

COLUMNS = ("id", "slug", "name", "status", "rpm_limit", "tpm_limit", "max_parallel", "spend_total")
STATUS = click.Choice(["active", "suspended"])


def tenant_view(tenant: Tenant) -> dict[str, Any]:
    return row_view(tenant)


def _fields(fn: Any) -> Any:
    """The options shared by create and update."""
    for option in reversed(
        [
            click.option("--name", default=None, help="Display name (default: the slug)."),
            click.option("--description", default=None),
            click.option("--status", type=STATUS, default=None, help="active or suspended."),
            click.option("--cache/--no-cache", "cache_enabled", default=None, help="Completion cache."),
            click.option(
                "--log-prompts/--no-log-prompts",
                "--log-payloads/--no-log-payloads",
                "log_prompts",
                default=None,
                help="Store prompts and responses (redacted) with the request logs.",
            ),
            click.option("--metadata", type=JSON_OBJECT, default=None, help="A JSON object (none: {})."),
        ]
    ):
        fn = option(fn)
    return limit_options(fn)


@click.group()
def tenants() -> None:
    """Manage tenants (LiteLLM: teams)."""


@tenants.command("create")
@click.argument("slug")
@_fields
@json_option
def create(slug: str, as_json: bool, **options: Any) -> None:
    """Create the tenant SLUG (lowercase letters, digits and dashes)."""

    async def work(session: AsyncSession, actor: audit.Actor) -> dict[str, Any]:
        tenant = await service.create_tenant(session, actor, slug=slug, **creation(**options))
        return tenant_view(tenant)

    emit(change("tenants create", work), as_json=as_json)


@tenants.command("list")
@click.option("--status", type=STATUS, default=None)
@click.option("--search", default=None, help="Part of the slug or name.")
@list_options
@json_option
def list_(status: str | None, search: str | None, limit: int, after: str | None, as_json: bool) -> None:
    """List tenants."""

    async def work(session: AsyncSession) -> tuple[list[dict[str, Any]], str | None]:
        rows = await service.list_tenants(
            session, status=status, search=search, after=parse_after(after), limit=limit
        )
        return page(rows, limit, tenant_view)

    rows, cursor = read(work)
    emit_page(rows, cursor, as_json=as_json, columns=COLUMNS)


@tenants.command("get")
@click.argument("ref")
@json_option
def get(ref: str, as_json: bool) -> None:
    """Show the tenant REF (id or slug)."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        return tenant_view(await service.get_tenant(session, ref))

    emit(read(work), as_json=as_json)


@tenants.command("update")
@click.argument("ref")
@click.option("--slug", default=None, help="A new slug.")
@_fields
@json_option
def update(ref: str, as_json: bool, **options: Any) -> None:
    """Change the tenant REF (id or slug): only the options given; a limit of none clears it."""
    changes = apply_changes(**options)

    async def work(session: AsyncSession, actor: audit.Actor) -> dict[str, Any]:
        tenant = await service.get_tenant(session, ref)
        return tenant_view(await service.update_tenant(session, actor, tenant, changes))

    emit(change("tenants update", work), as_json=as_json)


@tenants.command("delete")
@click.argument("ref")
@click.confirmation_option(prompt="Delete the tenant with its keys, members, grants and budgets?")
@json_option
def delete(ref: str, as_json: bool) -> None:
    """Delete the tenant REF (id or slug) with its keys, members, grants and budgets."""

    async def work(session: AsyncSession, actor: audit.Actor) -> dict[str, Any]:
        tenant = await service.get_tenant(session, ref)
        view = tenant_view(tenant)
        await service.delete_tenant(session, actor, tenant)
        return {"deleted": True, "id": view["id"], "slug": view["slug"]}

    emit(change("tenants delete", work), as_json=as_json)
