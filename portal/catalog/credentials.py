"""Stored provider credentials: secrets encrypted at rest with the gateway's :class:`CredentialCipher`.

Write-only: a secret goes in (create, rotate) and never comes out of any API; only its last four
characters are kept in clear as a ``hint``. A credential used by a deployment cannot be deleted.
Every change is audited (the ciphertext redacted) and notes ``catalog=True``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from portal import audit
from portal.audit.service import snapshot
from portal.catalog.crypto import CredentialCipher
from portal.config import ModelConfig
from portal.db.effects import note
from portal.db.models import Credential, Deployment, Provider
from portal.errors import ConflictError, NotFoundError, ValidationFailedError

__all__ = [
    "create_credential",
    "credential_users",
    "delete_credential",
    "get_credential",
    "list_credentials",
    "rotate_credential",
]

_CREDENTIAL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_HINT_MIN_LENGTH = 8
_MUST_NOT_BE_EMPTY = "must not be empty"


def _as_uuid(ref: str | uuid.UUID) -> uuid.UUID | None:
    if isinstance(ref, uuid.UUID):
        return ref
    try:
        return uuid.UUID(ref)
    except ValueError:
        return None


def _hint(secret: str) -> str:
    return secret[-4:] if len(secret) >= _HINT_MIN_LENGTH else ""


def _encrypt(cipher: CredentialCipher | None, secret: str) -> bytes:
    if not secret or not secret.strip():
        raise ValidationFailedError("empty secret", {"secret": _MUST_NOT_BE_EMPTY})
    if cipher is None:
        raise ConflictError("no PORTAL_SECRET_KEY is set, so credentials cannot be stored encrypted")
    return cipher.encrypt(secret)


async def get_credential(session: AsyncSession, ref: str | uuid.UUID) -> Credential:
    """The stored credential with id or name ``ref``, or :class:`NotFoundError`."""
    ident = _as_uuid(ref)
    credential = await session.get(Credential, ident) if ident is not None else None
    if credential is None and isinstance(ref, str):
        credential = await session.scalar(select(Credential).where(Credential.name == ref))
    if credential is None:
        raise NotFoundError(f"credential {ref!s} does not exist")
    return credential


async def list_credentials(
    session: AsyncSession, *, after: uuid.UUID | None = None, limit: int = 100
) -> Sequence[Credential]:
    """Stored credentials by id, up to ``limit + 1`` rows after the cursor ``after``."""
    query = select(Credential).order_by(Credential.id).limit(limit + 1)
    if after is not None:
        query = query.where(Credential.id > after)
    return (await session.scalars(query)).all()


async def credential_users(
    session: AsyncSession, credentials: Sequence[Credential], config_models: Sequence[ModelConfig] = ()
) -> dict[uuid.UUID, list[str]]:
    """The ids of the deployments using each credential (config deployments as ``config:<model>:<n>``)."""
    out: dict[uuid.UUID, list[str]] = {c.id: [] for c in credentials}
    if not credentials:
        return out
    by_name = {c.name: c.id for c in credentials}
    refs = [f"credential:{name}" for name in by_name]
    rows = await session.execute(
        select(Deployment.id, Deployment.credential_id, Deployment.credential_ref)
        .where(or_(Deployment.credential_id.in_(list(out)), Deployment.credential_ref.in_(refs)))
        .order_by(Deployment.id)
    )
    for dep_id, credential_id, ref in rows.tuples():
        owner = (
            credential_id if credential_id in out else by_name.get((ref or "").removeprefix("credential:"))
        )
        if owner is not None:
            out[owner].append(str(dep_id))
    for model in config_models:
        for index, dep in enumerate(model.deployments):
            owner = by_name.get((dep.api_key or "").removeprefix("credential:"))
            if owner is not None and (dep.api_key or "").startswith("credential:"):
                out[owner].append(f"config:{model.name}:{index}")
    return out


async def create_credential(
    session: AsyncSession,
    actor: audit.Actor,
    cipher: CredentialCipher | None,
    *,
    name: str,
    provider: str,
    secret: str,
) -> Credential:
    """Store a provider secret encrypted (``credential.created`` audited, without the secret)."""
    errors: dict[str, str] = {}
    if not _CREDENTIAL_NAME.match(name):
        errors["name"] = "1-200 letters, digits and . _ -, starting with a letter or digit"
    if provider not in set(Provider):
        errors["provider"] = f"one of {', '.join(Provider)}"
    if not secret.strip():
        errors.update(secret=_MUST_NOT_BE_EMPTY)
    if errors:
        raise ValidationFailedError("invalid credential", errors)
    if await session.scalar(select(Credential.id).where(Credential.name == name)) is not None:
        raise ConflictError(f"credential {name!r} already exists")
    credential = Credential(
        name=name, provider=provider, ciphertext=_encrypt(cipher, secret), hint=_hint(secret)
    )
    session.add(credential)
    await session.flush()
    await audit.record(
        session,
        actor,
        "credential.created",
        target_type="credential",
        target_id=credential.id,
        after=snapshot(credential),
    )
    note(session, catalog=True)
    return credential


async def rotate_credential(
    session: AsyncSession,
    actor: audit.Actor,
    cipher: CredentialCipher | None,
    credential: Credential,
    secret: str,
) -> Credential:
    """Replace the secret of ``credential`` (``credential.rotated`` audited; hints only)."""
    ciphertext = _encrypt(cipher, secret)
    before = snapshot(credential)
    credential.ciphertext = ciphertext
    credential.hint = _hint(secret)
    await session.flush()
    await audit.record(
        session,
        actor,
        "credential.rotated",
        target_type="credential",
        target_id=credential.id,
        before=before,
        after=snapshot(credential),
    )
    note(session, catalog=True)
    return credential


async def delete_credential(
    session: AsyncSession,
    actor: audit.Actor,
    credential: Credential,
    *,
    config_models: Sequence[ModelConfig] = (),
) -> None:
    """Delete ``credential`` (``credential.deleted`` audited); 409 while a deployment uses it."""
    users = (await credential_users(session, [credential], config_models))[credential.id]
    if users:
        raise ConflictError(
            f"credential {credential.name!r} is used by deployment(s) {', '.join(users)}; "
            "point them at another credential first"
        )
    before = snapshot(credential)
    await session.delete(credential)
    await session.flush()
    await audit.record(
        session, actor, "credential.deleted", target_type="credential", target_id=before["id"], before=before
    )
    note(session, catalog=True)
