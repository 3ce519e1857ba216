"""Who may manage which user: the rules both the native API and the compatible routes apply."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from portal.auth.admin import AdminCaller
from portal.db.models import AdminRole, User, UserRole
from portal.errors import PermissionDeniedError
from portal.users.service import user_tenants

__all__ = ["check_global_role", "check_manageable"]


def check_global_role(caller: AdminCaller, wanted: str, current: str = UserRole.NONE) -> None:
    """Only an admin sets or changes a user's global role (admin, operator, auditor)."""
    if wanted != current and caller.role != AdminRole.ADMIN:
        raise PermissionDeniedError("only an admin may set a user's global role")


async def check_manageable(
    db: AsyncSession, caller: AdminCaller, user: User, *, deleting: bool = False
) -> None:
    """A tenant admin manages only plain members (no global role); it deletes only users who belong
    to no other tenant (it removes them from its tenant instead)."""
    if not caller.tenant_scoped:
        return
    if user.role != UserRole.NONE:
        raise PermissionDeniedError(f"a tenant admin may not change a user with the global role {user.role}")
    if deleting and any(not caller.sees(m.tenant_id) for m in await user_tenants(db, user.id)):
        raise PermissionDeniedError("this user belongs to other tenants too; remove it from yours instead")
