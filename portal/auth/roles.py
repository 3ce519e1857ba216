"""The role rules: which permissions each admin role holds, and how a route declares the one it needs.

Every admin route (native ``/api`` and the compatible surfaces) declares exactly one permission with
``opt=need(Permission.X)``; the guard refuses a route that declares none, so a forgotten rule fails
closed, and the route x role matrix test fails too.

Roles:
- ``admin``: everything.
- ``viewer``: read everything except the audit log.
- ``auditor``: read everything, the audit log included.
- ``operator`` (people): tenants, users, keys, models, grants, budgets; not the audit log, and no
  role above its own (so it cannot make anyone an admin).
- ``tenant_admin``: one tenant: read it, manage its members, keys, key grants, key budgets and
  limits (never above the tenant's own), read its spend and logs; the model catalog read-only.
- ``member`` (people): self-service in one tenant: read it and the catalog, manage its keys within
  the tenant's limits, read its spend and logs.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from portal.db.models import AdminRole

__all__ = ["ROLE_PERMISSIONS", "Permission", "need", "rank_allows"]


class Permission(StrEnum):
    TENANTS_READ = "tenants:read"
    TENANTS_WRITE = "tenants:write"
    USERS_READ = "users:read"
    USERS_WRITE = "users:write"
    KEYS_READ = "keys:read"
    KEYS_WRITE = "keys:write"
    CATALOG_READ = "catalog:read"
    CATALOG_WRITE = "catalog:write"
    CREDENTIALS_READ = "credentials:read"
    CREDENTIALS_WRITE = "credentials:write"
    GRANTS_READ = "grants:read"
    GRANTS_WRITE = "grants:write"
    BUDGETS_READ = "budgets:read"
    BUDGETS_WRITE = "budgets:write"
    SPEND_READ = "spend:read"
    LOGS_READ = "logs:read"
    AUDIT_READ = "audit:read"
    CONFIG_READ = "config:read"


_READ = frozenset(p for p in Permission if p.value.endswith(":read") and p is not Permission.AUDIT_READ)

ROLE_PERMISSIONS: dict[AdminRole, frozenset[Permission]] = {
    AdminRole.ADMIN: frozenset(Permission),
    AdminRole.OPERATOR: frozenset(Permission) - {Permission.AUDIT_READ},
    AdminRole.VIEWER: _READ,
    AdminRole.AUDITOR: _READ | {Permission.AUDIT_READ},
    AdminRole.TENANT_ADMIN: frozenset(
        {
            Permission.TENANTS_READ,
            Permission.USERS_READ,
            Permission.USERS_WRITE,
            Permission.KEYS_READ,
            Permission.KEYS_WRITE,
            Permission.CATALOG_READ,
            Permission.GRANTS_READ,
            Permission.GRANTS_WRITE,
            Permission.BUDGETS_READ,
            Permission.BUDGETS_WRITE,
            Permission.SPEND_READ,
            Permission.LOGS_READ,
        }
    ),
    AdminRole.MEMBER: frozenset(
        {
            Permission.TENANTS_READ,
            Permission.KEYS_READ,
            Permission.KEYS_WRITE,
            Permission.CATALOG_READ,
            Permission.SPEND_READ,
            Permission.LOGS_READ,
        }
    ),
}


def need(permission: Permission) -> dict[str, Any]:
    """The ``opt`` of a route that requires ``permission``."""
    return {"permission": permission}


def rank_allows(holder: AdminRole, wanted: AdminRole | None) -> bool:
    """May a caller with role ``holder`` mint (or assign) a key with role ``wanted``?

    Only when the wanted role's permissions are a subset of the holder's; a proxy key (no role) is
    always fine. So nobody can create a key with more rights than its own.
    """
    if wanted is None:
        return True
    return ROLE_PERMISSIONS[wanted] <= ROLE_PERMISSIONS[holder]
