"""``portal users``: create, list, get, update and delete users, and their tenant memberships."""

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
from portal.db.models import MembershipRole, User, UserRole
from portal.tenants.service import get_tenant
from portal.users import service

__all__ = ["users"]

COLUMNS = ("id", "email", "external_id", "display_name", "role", "status", "spend_total")
ROLE = click.Choice([r.value for r in UserRole])
MEMBER_ROLE = click.Choice([r.value for r in MembershipRole])


def user_view(user: User) -> dict[str, Any]:
    return row_view(user)


def _fields(fn: Any) -> Any:
    """The options shared by create and update."""
    for option in reversed(
        [
            click.option("--email", default=None),
            click.option("--external-id", default=None, help="An id from another system (LiteLLM user_id)."),
            click.option("--name", "display_name", default=None, help="Display name."),
            click.option("--role", type=ROLE, default=None, help="Global portal role (default none)."),
            click.option("--metadata", type=JSON_OBJECT, default=None, help="A JSON object (none: {})."),
        ]
    ):
        fn = option(fn)
    return limit_options(fn)


async def _with_memberships(session: AsyncSession, user: User) -> dict[str, Any]:
    view = user_view(user)
    memberships = []
    for membership in await service.user_tenants(session, user.id):
        tenant = await get_tenant(session, membership.tenant_id)
        memberships.append({"tenant_id": str(tenant.id), "tenant": tenant.slug, "role": membership.role})
    view["memberships"] = memberships
    return view


@click.group()
def users() -> None:
    """Manage users (people and LiteLLM user ids) and their tenant memberships."""


@users.command("create")
@_fields
@click.option("--tenant", default=None, help="Also make the user a member of this tenant (id or slug).")
@click.option("--member-role", type=MEMBER_ROLE, default="member", show_default=True)
@json_option
def create(tenant: str | None, member_role: str, as_json: bool, **options: Any) -> None:
    """Create a user (give --email or --external-id)."""

    async def work(session: AsyncSession, actor: audit.Actor) -> dict[str, Any]:
        user = await service.create_user(session, actor, **creation(**options))
        if tenant is not None:
            row = await get_tenant(session, tenant)
            await service.add_member(
                session, actor, tenant_id=row.id, user_id=user.id, role=MembershipRole(member_role)
            )
        return await _with_memberships(session, user)

    emit(change("users create", work), as_json=as_json)


@users.command("list")
@click.option("--tenant", default=None, help="Only this tenant's members (id or slug).")
@click.option("--search", default=None, help="Part of the email, external id or name.")
@list_options
@json_option
def list_(tenant: str | None, search: str | None, limit: int, after: str | None, as_json: bool) -> None:
    """List users."""

    async def work(session: AsyncSession) -> tuple[list[dict[str, Any]], str | None]:
        tenant_id = (await get_tenant(session, tenant)).id if tenant else None
        rows = await service.list_users(
            session, tenant_id=tenant_id, search=search, after=parse_after(after), limit=limit
        )
        return page(rows, limit, user_view)

    rows, cursor = read(work)
    emit_page(rows, cursor, as_json=as_json, columns=COLUMNS)


@users.command("get")
@click.argument("ref")
@json_option
def get(ref: str, as_json: bool) -> None:
    """Show the user REF (id, email or external id) and its memberships."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        return await _with_memberships(session, await service.get_user(session, ref))

    emit(read(work), as_json=as_json)


@users.command("update")
@click.argument("ref")
@_fields
@click.option("--status", type=click.Choice(["active", "disabled"]), default=None)
@json_option
def update(ref: str, as_json: bool, **options: Any) -> None:
    """Change the user REF (id, email or external id): only the options given."""
    changes = apply_changes(**options)

    async def work(session: AsyncSession, actor: audit.Actor) -> dict[str, Any]:
        user = await service.get_user(session, ref)
        return await _with_memberships(session, await service.update_user(session, actor, user, changes))

    emit(change("users update", work), as_json=as_json)


@users.command("delete")
@click.argument("ref")
@click.confirmation_option(prompt="Delete the user with its keys, memberships, grants and budgets?")
@json_option
def delete(ref: str, as_json: bool) -> None:
    """Delete the user REF with its keys, memberships, grants and budgets."""

    async def work(session: AsyncSession, actor: audit.Actor) -> dict[str, Any]:
        user = await service.get_user(session, ref)
        view = {"deleted": True, "id": str(user.id), "email": user.email}
        await service.delete_user(session, actor, user)
        return view

    emit(change("users delete", work), as_json=as_json)


@users.command("add-member")
@click.argument("user_ref")
@click.argument("tenant_ref")
@click.option("--role", type=MEMBER_ROLE, default="member", show_default=True)
@json_option
def add_member(user_ref: str, tenant_ref: str, role: str, as_json: bool) -> None:
    """Make USER_REF a member of TENANT_REF (or change its role there)."""

    async def work(session: AsyncSession, actor: audit.Actor) -> dict[str, Any]:
        user = await service.get_user(session, user_ref)
        tenant = await get_tenant(session, tenant_ref)
        await service.add_member(
            session, actor, tenant_id=tenant.id, user_id=user.id, role=MembershipRole(role)
        )
        return await _with_memberships(session, user)

    emit(change("users add-member", work), as_json=as_json)


@users.command("remove-member")
@click.argument("user_ref")
@click.argument("tenant_ref")
@json_option
def remove_member(user_ref: str, tenant_ref: str, as_json: bool) -> None:
    """End the membership of USER_REF in TENANT_REF."""

    async def work(session: AsyncSession, actor: audit.Actor) -> dict[str, Any]:
        user = await service.get_user(session, user_ref)
        tenant = await get_tenant(session, tenant_ref)
        await service.remove_member(session, actor, tenant_id=tenant.id, user_id=user.id)
        return await _with_memberships(session, user)

    emit(change("users remove-member", work), as_json=as_json)
