"""The effective configuration for backups (COO-LLM ``GET /admin/v1/config``), secrets redacted.

The document has the settings' own names at the top level (as in the YAML config file: ``database_url``,
``master_key``, ``models``, ``api_keys``...), then ``database``: the models, deployments and credentials
stored in the database (the catalog the proxy merges with the config's models), and ``generated_at``.

Redacted (replaced by ``<redacted>``): ``secret_key``, ``master_key`` and any other setting whose name
says it is a secret (``*secret*``, ``*password*``, ``*token*``, ``authorization``, ``*_key``), the password
inside any URL (database, Redis, API bases), static ``api_keys`` values (their display prefix is kept),
and credential values (only their names and providers appear). Deployment ``api_key`` *references*
(``env:NAME``, ``credential:NAME``) name where a secret lives, not the secret, and are kept.

To restore from a backup, drop ``database`` and ``generated_at`` and put the secrets back.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import msgspec
import yaml
from sqlalchemy.ext.asyncio import AsyncSession

from portal.api.schemas import money
from portal.catalog.credentials import list_credentials
from portal.catalog.service import list_models, model_deployments
from portal.config import Settings
from portal.db.models import Credential, Deployment, Model
from portal.errors import NotFoundError
from portal.keys.secrets import display_prefix
from portal.tenants.service import get_tenant
from portal.timeutil import utcnow

__all__ = ["REDACTED", "config_document", "redact", "to_yaml"]

REDACTED = "<redacted>"
_SECRET_NAME = re.compile(r"(secret|passw|token|private|authorization|(^|[_-])key$)", re.IGNORECASE)
_REFERENCE = re.compile(r"^(env|credential):[^\s]+$")
_PAGE = 500
R = TypeVar("R", Model, Credential)


def _redact_url(value: str) -> str:
    """``value`` with the password of its ``user:password@`` part masked, if it is such a URL."""
    if "://" not in value or "@" not in value:
        return value
    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:
        return REDACTED
    if not password:
        return value
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{hostinfo}"))


def redact(value: Any, name: str = "") -> Any:
    """A JSON-safe copy of ``value`` with every secret redacted (see the module docstring)."""
    if isinstance(value, dict):
        return {str(k): redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, name) for v in value]
    if isinstance(value, str):
        if name and _SECRET_NAME.search(name) and value and not _REFERENCE.match(value):
            return REDACTED
        return _redact_url(value)
    return value


def _settings(settings: Settings) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(settings)
    for item, spec in zip(data.get("api_keys", []), settings.api_keys, strict=True):
        item["key_prefix"] = display_prefix(spec.key)
    out: dict[str, Any] = redact(data)
    return out


def _price(value: Decimal | None) -> str | None:
    return None if value is None else money(value)


async def _every(fetch: Callable[[uuid.UUID | None], Awaitable[Sequence[R]]]) -> list[R]:
    """Every row of a paged service listing (``limit + 1`` rows per call, by id)."""
    rows: list[R] = []
    after: uuid.UUID | None = None
    while True:
        page = await fetch(after)
        rows.extend(page[:_PAGE])
        if len(page) <= _PAGE:
            return rows
        after = page[_PAGE - 1].id


async def _tenant_slugs(session: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    slugs: dict[uuid.UUID, str] = {}
    for tenant_id in ids:
        try:
            slugs[tenant_id] = (await get_tenant(session, tenant_id)).slug
        except NotFoundError:
            continue
    return slugs


def _deployment(
    dep: Deployment, credential: Credential | None, tenants: dict[uuid.UUID, str]
) -> dict[str, Any]:
    return {
        "id": str(dep.id),
        "name": dep.name,
        "provider": dep.provider,
        "model": dep.upstream_model,
        "api_base": dep.api_base,
        "api_version": dep.api_version,
        "region": dep.region,
        "api_key": f"credential:{credential.name}" if credential is not None else dep.credential_ref,
        "input_price_per_mtok": _price(dep.input_price_per_mtok),
        "output_price_per_mtok": _price(dep.output_price_per_mtok),
        "weight": dep.weight,
        "timeout_s": dep.timeout_s,
        "max_retries": dep.max_retries,
        "tenant": tenants.get(dep.tenant_id) if dep.tenant_id else None,
        "enabled": dep.enabled,
        "extra": dict(dep.extra or {}),
    }


async def _database(session: AsyncSession) -> dict[str, Any]:
    models = await _every(lambda after: list_models(session, after=after, limit=_PAGE))
    deployments = await model_deployments(session, [m.id for m in models])
    tenant_ids = {d.tenant_id for pairs in deployments.values() for d, _ in pairs if d.tenant_id}
    tenants = await _tenant_slugs(session, tenant_ids)
    credentials = await _every(lambda after: list_credentials(session, after=after, limit=_PAGE))
    catalog = [
        {
            "name": model.name,
            "mode": model.mode,
            "description": model.description,
            "enabled": model.enabled,
            "fallbacks": list(model.fallbacks or []),
            "metadata": dict(model.metadata_ or {}),
            "deployments": [_deployment(d, c, tenants) for d, c in deployments.get(model.id, [])],
        }
        for model in models
    ]
    return {
        "models": redact(catalog),
        "credentials": [{"name": c.name, "provider": c.provider, "value": REDACTED} for c in credentials],
    }


async def config_document(session: AsyncSession, settings: Settings) -> dict[str, Any]:
    """The effective configuration of this process and the stored catalog, secrets redacted."""
    document = _settings(settings)
    document["database"] = await _database(session)
    document["generated_at"] = utcnow().isoformat()
    return document


def to_yaml(document: dict[str, Any]) -> str:
    """``document`` as YAML (block style, in the document's key order)."""
    text: str = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return text
