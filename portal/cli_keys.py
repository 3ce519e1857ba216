"""``portal keys``: create, list, get, update, block, unblock, revoke, rotate and delete API keys.

A new key's secret (from ``create`` and ``rotate``) is printed once; only its hash is stored. The
command line acts with full rights (whoever runs it can reach the database), so no role rule applies.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncSession

from portal import audit
from portal.cli_common import (
    CLEAR,
    DATETIME,
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
from portal.db.models import AdminRole, ApiKey, KeyStatus, SubjectType
from portal.grants.service import list_grants, replace_grants
from portal.keys import service
from portal.keys.service import NewKey
from portal.tenants.service import get_tenant
from portal.users.service import get_user

__all__ = ["keys"]

COLUMNS = ("id", "key_prefix", "alias", "role", "status", "tenant_id", "user_id", "expires_at", "spend_total")
ROLE_CHOICES = [r.value for r in AdminRole]


def key_view(key: ApiKey, **extra: Any) -> dict[str, Any]:
    return row_view(key, **extra)


async def _full_view(session: AsyncSession, key: ApiKey, **extra: Any) -> dict[str, Any]:
    grants = await list_grants(session, subject_type=SubjectType.KEY, subject_id=key.id)
    return key_view(key, models=[g.model_pattern for g in grants], **extra)


def _print_new(data: dict[str, Any], as_json: bool) -> None:
    emit(data, as_json=as_json)
    if not as_json:
        click.echo("(the secret is shown only now: store it)", err=True)


class _Role(click.ParamType[Any]):
    name = "ROLE|none"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        if value.lower() == "none":
            return CLEAR
        if value not in ROLE_CHOICES:
            self.fail(f"{value!r} is not one of {', '.join(ROLE_CHOICES)} or none", param, ctx)
        return AdminRole(value)


def _fields(fn: Any) -> Any:
    """The options shared by create and update."""
    for option in reversed(
        [
            click.option("--alias", default=None, help="A name for the key."),
            click.option("--user", "user", default=None, help="Owner (user id, email or external id; none)."),
            click.option(
                "--role",
                type=_Role(),
                default=None,
                help=f"Admin role ({', '.join(ROLE_CHOICES)}); none = a proxy key.",
            ),
            click.option("--expires-at", type=DATETIME, default=None, help="ISO 8601 time (none: never)."),
            click.option("--metadata", type=JSON_OBJECT, default=None, help="A JSON object (none: {})."),
            click.option("--cache/--no-cache", "cache_enabled", default=None, help="Completion cache."),
            click.option(
                "--model",
                "models",
                multiple=True,
                help="A model pattern the key may use (key grant; repeat for more). Narrows the tenant's.",
            ),
        ]
    ):
        fn = option(fn)
    return limit_options(fn)


async def _user_id(session: AsyncSession, user: str | None) -> uuid.UUID | None:
    if user is None or user.lower() == "none":
        return None
    return (await get_user(session, user)).id


async def _set_models(
    session: AsyncSession, actor: audit.Actor, key: ApiKey, models: tuple[str, ...]
) -> None:
    await replace_grants(
        session,
        actor,
        subject_type=SubjectType.KEY,
        subject_id=key.id,
        pairs=[(pattern, "*") for pattern in models],
        tenant_id=key.tenant_id,
    )


@click.group()
def keys() -> None:
    """Manage API keys (proxy keys and admin keys)."""


@keys.command("create")
@click.option("--tenant", default=None, help="The key's tenant (id or slug).")
@_fields
@click.option("--key", "secret", default=None, help="Use this value instead of generating one (>= 8 chars).")
@json_option
def create(
    tenant: str | None,
    user: str | None,
    models: tuple[str, ...],
    secret: str | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Create a key and print its secret once."""

    async def work(session: AsyncSession, actor: audit.Actor) -> dict[str, Any]:
        tenant_id = (await get_tenant(session, tenant)).id if tenant else None
        new = await service.create_key(
            session,
            actor,
            tenant_id=tenant_id,
            user_id=await _user_id(session, user),
            secret=secret,
            source="cli",
            **creation(**options),
        )
        if models:
            await _set_models(session, actor, new.key, models)
        return await _full_view(session, new.key, secret=new.secret)

    _print_new(change("keys create", work), as_json)


@keys.command("list")
@click.option("--tenant", default=None, help="Only this tenant's keys (id or slug).")
@click.option("--user", default=None, help="Only this user's keys (id, email or external id).")
@click.option("--status", type=click.Choice([s.value for s in KeyStatus]), default=None)
@click.option("--admin/--proxy", "admin", default=None, help="Only admin keys (with a role) or proxy keys.")
@click.option("--search", default=None, help="Part of the alias, or the start of the key.")
@list_options
@json_option
def list_(
    tenant: str | None,
    user: str | None,
    status: str | None,
    admin: bool | None,
    search: str | None,
    limit: int,
    after: str | None,
    as_json: bool,
) -> None:
    """List keys (never their secrets)."""

    async def work(session: AsyncSession) -> tuple[list[dict[str, Any]], str | None]:
        tenant_id = (await get_tenant(session, tenant)).id if tenant else None
        user_id = (await get_user(session, user)).id if user else None
        rows = await service.list_keys(
            session,
            tenant_id=tenant_id,
            user_id=user_id,
            status=status,
            admin=admin,
            search=search,
            after=parse_after(after),
            limit=limit,
        )
        return page(rows, limit, key_view)

    rows, cursor = read(work)
    emit_page(rows, cursor, as_json=as_json, columns=COLUMNS)


@keys.command("get")
@click.argument("ref")
@json_option
def get(ref: str, as_json: bool) -> None:
    """Show the key REF (its id, its value or its hash) and its model grants."""

    async def work(session: AsyncSession) -> dict[str, Any]:
        return await _full_view(session, await service.get_key(session, ref))

    emit(read(work), as_json=as_json)


@keys.command("update")
@click.argument("ref")
@_fields
@json_option
def update(ref: str, user: str | None, models: tuple[str, ...], as_json: bool, **options: Any) -> None:
    """Change the key REF: only the options given (none clears a value); --model replaces its grants."""
    changes = apply_changes(**options)

    async def work(session: AsyncSession, actor: audit.Actor) -> dict[str, Any]:
        key = await service.get_key(session, ref)
        if user is not None:
            changes["user_id"] = await _user_id(session, user)
        await service.update_key(session, actor, key, changes)
        if models:
            await _set_models(session, actor, key, models)
        return await _full_view(session, key)

    emit(change("keys update", work), as_json=as_json)


def _status_command(
    name: str, act: Callable[[AsyncSession, audit.Actor, ApiKey], Awaitable[ApiKey]], doc: str
) -> None:
    @keys.command(name, help=doc)
    @click.argument("ref")
    @json_option
    def command(ref: str, as_json: bool) -> None:
        async def work(session: AsyncSession, actor: audit.Actor) -> dict[str, Any]:
            key = await act(session, actor, await service.get_key(session, ref))
            return key_view(key)

        emit(change(f"keys {name}", work), as_json=as_json)


_status_command("block", service.block_key, "Block the key REF (reversible); the proxy refuses it at once.")
_status_command("unblock", service.unblock_key, "Make the blocked key REF active again.")
_status_command("revoke", service.revoke_key, "Revoke the key REF for good; the proxy refuses it at once.")


@keys.command("rotate")
@click.argument("ref")
@click.option(
    "--grace-period",
    "grace_s",
    type=click.IntRange(0, service.MAX_GRACE_S),
    default=0,
    show_default=True,
    help="Seconds the old key keeps working.",
)
@click.option("--key", "secret", default=None, help="Use this value for the new key (>= 8 chars).")
@json_option
def rotate(ref: str, grace_s: int, secret: str | None, as_json: bool) -> None:
    """Replace the key REF by a new secret with the same settings, grants and budgets."""

    async def work(session: AsyncSession, actor: audit.Actor) -> dict[str, Any]:
        old = await service.get_key(session, ref)
        new: NewKey = await service.rotate_key(session, actor, old, grace_s=grace_s, secret=secret)
        return await _full_view(
            session, new.key, secret=new.secret, replaces=old.id, old_key_expires_at=old.expires_at
        )

    _print_new(change("keys rotate", work), as_json)


@keys.command("delete")
@click.argument("ref")
@click.confirmation_option(prompt="Delete the key with its grants and budgets?")
@json_option
def delete(ref: str, as_json: bool) -> None:
    """Delete the key REF with its key grants and budgets (revoke keeps a record; delete does not)."""

    async def work(session: AsyncSession, actor: audit.Actor) -> dict[str, Any]:
        key = await service.get_key(session, ref)
        view = {"deleted": True, "id": str(key.id), "key_prefix": key.key_prefix}
        await service.delete_key(session, actor, key)
        return view

    emit(change("keys delete", work), as_json=as_json)
