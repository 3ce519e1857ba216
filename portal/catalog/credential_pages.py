"""Portal pages of the provider credentials (issue 7): ``/credentials`` lists the stored secrets (name,
provider, a 4-character hint, the deployments that use each) with a create form; a credential's secret
can be replaced (write-only: it is never shown again) and an unused credential deleted after a
confirmation (refused, with the deployments named, while one uses it).

Every change goes through :mod:`portal.catalog.credentials`, the service the admin API uses (encrypted
with the gateway's cipher, audited in the same transaction); forms answer through
:mod:`portal.web.forms` (in place with htmx, a whole page without).
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotFoundException
from litestar.params import Body, FromPath
from litestar.response import Template
from litestar.types import ControllerRouterHandler
from sqlalchemy.ext.asyncio import AsyncSession

from portal.api.deps import Db
from portal.auth.person import page
from portal.auth.roles import Permission
from portal.catalog import credentials as service
from portal.db.models import Credential, Provider
from portal.errors import DomainError, NotFoundError, ValidationFailedError
from portal.proxy.gateway import Gateway
from portal.web.forms import form_page
from portal.web.pages import Answer, flash, page_caller, redirect

__all__ = ["PAGES"]

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
LIST_LIMIT = 500


def _gateway(request: Request[Any, Any, Any]) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def _problem(exc: DomainError) -> dict[str, Any]:
    return {"error": exc.message, "fields": exc.fields if isinstance(exc, ValidationFailedError) else {}}


async def _credential(db: AsyncSession, ref: str) -> Credential:
    try:
        return await service.get_credential(db, ref)
    except NotFoundError as exc:
        raise NotFoundException(exc.message) from None


async def _users(request: Request[Any, Any, Any], db: AsyncSession, credential: Credential) -> list[str]:
    found = await service.credential_users(db, [credential], _gateway(request).settings.models)
    return found[credential.id]


async def _done(request: Request[Any, Any, Any], db: AsyncSession, message: str) -> Answer:
    await db.commit()  # before the flash: SQLite allows one writer at a time
    await flash(request, message)
    return redirect(request, "/credentials")


@get("/credentials", name="credentials:list", opt=page(Permission.CREDENTIALS_READ))
async def credentials_page(request: Request[Any, Any, Any], db: Db) -> Template:
    """Stored provider credentials (never their secrets) and the deployments that use them."""
    return await _list(request, db)


async def _list(
    request: Request[Any, Any, Any],
    db: AsyncSession,
    *,
    form: dict[str, str] | None = None,
    problem: dict[str, Any] | None = None,
    status_code: int = 422,
) -> Template:
    caller = await page_caller(request)
    rows = list(await service.list_credentials(db, limit=LIST_LIMIT))[:LIST_LIMIT]
    context = {
        "credentials": rows,
        "users": await service.credential_users(db, rows, _gateway(request).settings.models),
        "providers": [p.value for p in Provider],
        "form": form or {"provider": Provider.OPENAI.value},
        "can_write": caller.can(Permission.CREDENTIALS_WRITE),
        "error": None,
        "fields": {},
        **(problem or {}),
    }
    return await form_page(
        request,
        "catalog/credentials.html",
        context,
        fragment="catalog/_credential_form.html",
        target="#credential-form",
        is_refused=problem is not None,
        status_code=status_code,
    )


@post("/credentials", name="credentials:create", opt=page(Permission.CREDENTIALS_WRITE))
async def create_credential(request: Request[Any, Any, Any], db: Db, data: Form) -> Answer:
    """Store a new provider secret, encrypted; errors inline (422, or 409 for a taken name)."""
    caller = await page_caller(request)
    name = (data.get("name") or "").strip()
    provider = (data.get("provider") or "").strip()
    try:
        await service.create_credential(
            db,
            caller.actor,
            _gateway(request).cipher,
            name=name,
            provider=provider,
            secret=data.get("secret", ""),
        )
    except DomainError as exc:
        await db.rollback()
        form = {"name": name, "provider": provider}  # never echo the secret back
        return await _list(request, db, form=form, problem=_problem(exc), status_code=exc.status_code)
    return await _done(request, db, f"Credential {name} stored.")


async def _secret_page(
    request: Request[Any, Any, Any],
    db: AsyncSession,
    credential: Credential,
    *,
    problem: dict[str, Any] | None = None,
    status_code: int = 422,
) -> Template:
    context = {
        "credential": credential,
        "used_by": await _users(request, db, credential),
        "error": None,
        "fields": {},
        **(problem or {}),
    }
    return await form_page(
        request,
        "catalog/credential_secret.html",
        context,
        fragment="catalog/_credential_secret_form.html",
        target="#credential-secret-form",
        is_refused=problem is not None,
        status_code=status_code,
    )


@get("/credentials/{ref:str}/secret", name="credentials:secret-form", opt=page(Permission.CREDENTIALS_WRITE))
async def secret_form(request: Request[Any, Any, Any], db: Db, ref: FromPath[str]) -> Template:
    """The form that replaces a credential's secret."""
    return await _secret_page(request, db, await _credential(db, ref))


@post("/credentials/{ref:str}/secret", name="credentials:secret", opt=page(Permission.CREDENTIALS_WRITE))
async def replace_secret(request: Request[Any, Any, Any], db: Db, ref: FromPath[str], data: Form) -> Answer:
    """Replace the secret (the deployments using it switch at the next catalog reload)."""
    caller = await page_caller(request)
    credential = await _credential(db, ref)
    name = credential.name
    try:
        await service.rotate_credential(
            db, caller.actor, _gateway(request).cipher, credential, data.get("secret", "")
        )
    except DomainError as exc:
        await db.rollback()
        credential = await _credential(db, ref)
        return await _secret_page(request, db, credential, problem=_problem(exc), status_code=exc.status_code)
    return await _done(request, db, f"The secret of {name} was replaced.")


async def _delete_page(
    request: Request[Any, Any, Any],
    db: AsyncSession,
    credential: Credential,
    *,
    problem: dict[str, Any] | None = None,
    status_code: int = 409,
) -> Template:
    context = {
        "credential": credential,
        "used_by": await _users(request, db, credential),
        "error": None,
        **(problem or {}),
    }
    return await form_page(
        request,
        "catalog/credential_delete.html",
        context,
        fragment="catalog/_credential_delete_form.html",
        target="#credential-delete-form",
        is_refused=problem is not None,
        status_code=status_code,
    )


@get(
    "/credentials/{ref:str}/delete", name="credentials:delete-confirm", opt=page(Permission.CREDENTIALS_WRITE)
)
async def delete_confirm(request: Request[Any, Any, Any], db: Db, ref: FromPath[str]) -> Template:
    """Ask before deleting a credential (and say who still uses it)."""
    return await _delete_page(request, db, await _credential(db, ref))


@post("/credentials/{ref:str}/delete", name="credentials:delete", opt=page(Permission.CREDENTIALS_WRITE))
async def delete_credential(request: Request[Any, Any, Any], db: Db, ref: FromPath[str]) -> Answer:
    """Delete an unused credential; refused (409, the users named) while a deployment uses it."""
    caller = await page_caller(request)
    credential = await _credential(db, ref)
    name = credential.name
    try:
        await service.delete_credential(
            db, caller.actor, credential, config_models=_gateway(request).settings.models
        )
    except DomainError as exc:
        await db.rollback()
        credential = await _credential(db, ref)
        return await _delete_page(request, db, credential, problem=_problem(exc), status_code=exc.status_code)
    return await _done(request, db, f"Credential {name} deleted.")


PAGES: list[ControllerRouterHandler] = [
    credentials_page,
    create_credential,
    secret_form,
    replace_secret,
    delete_confirm,
    delete_credential,
]
