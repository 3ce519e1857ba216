"""Local break-glass sign-in: accounts with an argon2 password hash (``users.password_hash``).

The account named by ``admin_id``/``admin_password`` (the COO-LLM seed's web UI admin) is created or
updated at start-up with role ``admin``. ``local_login: false`` turns local sign-in off entirely.
Unknown accounts cost the same argon2 work as known ones, so timing does not reveal which exist.
"""

from __future__ import annotations

import asyncio
import logging

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal import audit
from portal.audit.service import snapshot
from portal.auth.identity import Identity, LoginFailed
from portal.config import Settings
from portal.db.models import User, UserIdentity, UserRole, UserStatus

__all__ = ["LOCAL_PROVIDER", "authenticate_local", "ensure_break_glass", "hash_password"]

log = logging.getLogger(__name__)
LOCAL_PROVIDER = "local"
# OWASP's argon2id baseline (19 MiB, 2 passes): the library default (64 MiB, 3 passes, 4 lanes) would
# take 64 MB per concurrent sign-in.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
_dummy_hash: str | None = None


def _dummy() -> str:
    """A hash to verify against when the account does not exist (same work, so timing tells nothing);
    made on first use, not at import."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _HASHER.hash("portal-dummy-password-for-timing")
    return _dummy_hash


_WRONG = "wrong user name or password"


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def authenticate_local(session: AsyncSession, username: str, password: str) -> Identity:
    """The local account ``username`` if ``password`` is right; else :class:`LoginFailed`."""
    username = username.strip()
    if not username or not password or len(username) > 200 or len(password) > 1000:
        raise LoginFailed(_WRONG, reason="bad_credentials", username=username or None)
    user = await session.scalar(
        select(User)
        .join(UserIdentity, UserIdentity.user_id == User.id)
        .where(UserIdentity.provider == LOCAL_PROVIDER, UserIdentity.subject == username)
    )
    stored = user.password_hash if user is not None and user.password_hash else _dummy()
    ok = await asyncio.to_thread(_verify, stored, password)
    if user is None or not user.password_hash:
        raise LoginFailed(_WRONG, reason="unknown_user", username=username)
    if not ok:
        raise LoginFailed(_WRONG, reason="bad_credentials", username=username)
    return Identity(
        provider=LOCAL_PROVIDER,
        subject=username,
        email=user.email,
        display_name=user.display_name or username,
        username=username,
    )


async def ensure_break_glass(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    """Create or update the configured break-glass admin account (idempotent; audited on change)."""
    if not settings.admin_id or not settings.admin_password:
        return
    actor = audit.Actor(type="system", label="config file")
    async with sessions() as session, session.begin():
        user = await session.scalar(
            select(User)
            .join(UserIdentity, UserIdentity.user_id == User.id)
            .where(UserIdentity.provider == LOCAL_PROVIDER, UserIdentity.subject == settings.admin_id)
        )
        if user is None:
            user = User(
                display_name=settings.admin_id,
                role=UserRole.ADMIN,
                status=UserStatus.ACTIVE,
                password_hash=hash_password(settings.admin_password),
            )
            session.add(user)
            await session.flush()
            session.add(UserIdentity(user_id=user.id, provider=LOCAL_PROVIDER, subject=settings.admin_id))
            await audit.record(
                session, actor, "user.created", target_type="user", target_id=user.id, after=snapshot(user)
            )
            log.info("break-glass account %r created", settings.admin_id)
            return
        if (
            user.password_hash
            and _verify(user.password_hash, settings.admin_password)
            and user.role == "admin"
        ):
            return
        before = snapshot(user)
        user.password_hash = hash_password(settings.admin_password)
        user.role = UserRole.ADMIN
        user.status = UserStatus.ACTIVE
        await session.flush()
        await audit.record(
            session,
            actor,
            "user.updated",
            target_type="user",
            target_id=user.id,
            before=before,
            after=snapshot(user),
        )
