"""Admin-key authentication for the admin API and the compatible admin surfaces.

A caller presents an admin key (``Authorization: Bearer``, ``X-API-Key`` or ``api-key``): a key with
a role, looked up through the gateway's key cache (so revocation and blocking apply exactly as on the
proxy), or the configured master key (role ``admin``, LiteLLM style). :func:`admin_guard` checks the
route's declared permission (see :mod:`portal.auth.roles`) and leaves the :class:`AdminCaller` on the
connection for handlers.
"""

from __future__ import annotations

import hmac
import os
import time
import uuid
from dataclasses import dataclass

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from portal import audit
from portal.auth.roles import ROLE_PERMISSIONS, Permission
from portal.db.models import TENANT_SCOPED_ROLES, AdminRole
from portal.errors import NotFoundError, PermissionDeniedError
from portal.proxy.gateway import Gateway
from portal.proxy.principal import KeyLookupUnavailable

__all__ = ["AdminCaller", "admin_guard", "authenticate", "presented_key"]

_STATE_KEY = "admin_caller"


@dataclass(frozen=True, slots=True)
class AdminCaller:
    """An authenticated admin caller: its role, its key (``None`` for the master key) and its tenant."""

    role: AdminRole
    key_id: uuid.UUID | None
    tenant_id: uuid.UUID | None
    label: str
    ip: str | None = None
    request_id: str | None = None
    user_id: uuid.UUID | None = None
    """Set when a signed-in person acts through the portal (then ``key_id`` is ``None``)."""

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]

    @property
    def tenant_scoped(self) -> bool:
        return self.role in TENANT_SCOPED_ROLES

    @property
    def actor(self) -> audit.Actor:
        if self.user_id is not None:
            return audit.Actor(
                type="user", id=str(self.user_id), label=self.label, ip=self.ip, request_id=self.request_id
            )
        return audit.Actor(
            type="admin_key" if self.key_id else "master_key",
            id=str(self.key_id) if self.key_id else None,
            label=self.label,
            ip=self.ip,
            request_id=self.request_id,
        )

    def sees(self, tenant_id: uuid.UUID | None) -> bool:
        """Whether an object of ``tenant_id`` is within this caller's reach."""
        return not self.tenant_scoped or (tenant_id is not None and tenant_id == self.tenant_id)

    def check_visible(self, tenant_id: uuid.UUID | None, what: str) -> None:
        """404 for an object outside a tenant admin's tenant (its existence is not revealed)."""
        if not self.sees(tenant_id):
            raise NotFoundError(f"{what} does not exist")

    def check_tenant(self, tenant_id: uuid.UUID | None) -> None:
        """403 when a tenant admin names another tenant (or none) for a change or a query."""
        if not self.sees(tenant_id):
            raise PermissionDeniedError("a tenant admin key acts only within its own tenant")

    def scoped_tenant(self, tenant_id: uuid.UUID | None) -> uuid.UUID | None:
        """The tenant a query or a new object is for: a tenant admin's own, whatever was asked."""
        if self.tenant_scoped:
            self.check_tenant(tenant_id or self.tenant_id)
            return self.tenant_id
        return tenant_id


def presented_key(connection: ASGIConnection) -> str | None:  # type: ignore[type-arg]
    """The key a request carries, from ``Authorization: Bearer``, ``X-API-Key`` or ``api-key``."""
    authorization = connection.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    for header in ("x-api-key", "api-key"):
        value = connection.headers.get(header, "").strip()
        if value:
            return value
    return None


async def authenticate(connection: ASGIConnection) -> AdminCaller:  # type: ignore[type-arg]
    """The admin caller of ``connection``; 401 without a valid admin key, 403 for a proxy-only key."""
    cached: AdminCaller | None = connection.scope.get("state", {}).get(_STATE_KEY)
    if cached is not None:
        return cached
    secret = presented_key(connection)
    if secret is None:
        raise NotAuthorizedException("an admin key is required (Authorization: Bearer <key> or X-API-Key)")
    ip = connection.client.host if connection.client else None
    request_id = connection.headers.get("x-request-id") or os.urandom(16).hex()
    gateway: Gateway = connection.app.state.gateway
    master = gateway.settings.master_key
    if master and hmac.compare_digest(secret.encode(), master.encode()):
        caller = AdminCaller(AdminRole.ADMIN, None, None, "master key", ip, request_id)
    else:
        try:
            principal = await gateway.keys.lookup(secret)
        except KeyLookupUnavailable as exc:
            raise NotAuthorizedException("the key store is unavailable; try again shortly") from exc
        if principal is None or not principal.usable(time.time()):
            raise NotAuthorizedException("invalid, expired, blocked or revoked admin key")
        if principal.role is None:
            raise PermissionDeniedException("this key is a proxy key; the admin API needs an admin key")
        if not principal.tenant_active:
            raise PermissionDeniedException("this key's tenant is suspended")
        caller = AdminCaller(
            AdminRole(principal.role),
            principal.key_id,
            principal.tenant_id,
            f"key {principal.key_prefix}",
            ip,
            request_id,
        )
    connection.scope.setdefault("state", {})[_STATE_KEY] = caller
    return caller


async def admin_guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """Authenticate and check the route's declared permission; a route without one is refused."""
    permission = handler.opt.get("permission")
    caller = await authenticate(connection)
    if not isinstance(permission, Permission):
        raise PermissionDeniedException("this route has no access rule")
    if not caller.can(permission):
        raise PermissionDeniedException(f"the {caller.role} role may not do this (needs {permission})")


async def provide_caller(request: ASGIConnection) -> AdminCaller:  # type: ignore[type-arg]
    """Dependency: the caller the guard authenticated."""
    return await authenticate(request)
