"""LiteLLM's vocabulary in portal's terms, both ways: how keys, users and teams look to a LiteLLM
client, and what LiteLLM settings (models, durations, roles) mean for portal.

The mapping:

* a team is a tenant: ``team_id`` = the tenant id (its slug is accepted too), ``team_alias`` = its
  name, ``blocked`` = suspended;
* a user's ``user_id`` is the portal user's ``external_id`` (its portal id for users made elsewhere),
  ``user_email`` its email, ``user_alias`` its display name;
* a key's ``token`` is the key id, ``key_name`` its display prefix; ``spend`` everywhere is the
  subject's lifetime spend;
* ``max_budget`` + ``budget_duration`` are the subject's USD budget (amount and period),
  ``budget_reset_at`` the end of its current period;
* ``models`` are the subject's grants. Portal denies by default, so LiteLLM's "empty = every model"
  becomes a ``*`` grant on the level that anchors access (a team; a user; a key without team or
  user): see :func:`grant_pairs`.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from portal.db.models import (
    ApiKey,
    Budget,
    BudgetKind,
    KeyStatus,
    MembershipRole,
    RequestLog,
    SubjectType,
    Tenant,
    TenantStatus,
    User,
    UserRole,
)
from portal.errors import NotFoundError, ValidationFailedError
from portal.grants.service import list_grants
from portal.keys.service import list_keys
from portal.limits.budgets import list_budgets
from portal.limits.periods import InvalidPeriod, parse_period
from portal.tenants.service import get_tenant
from portal.users.service import get_user, list_members, user_tenants

__all__ = [
    "ALL_MODELS",
    "NO_MODELS",
    "Views",
    "expiry",
    "grant_pairs",
    "is_anchor",
    "member_role",
    "seconds",
    "slug_of",
    "user_role",
]

NO_MODELS = "no-default-models"
"""LiteLLM's model name meaning "no model at all" (access only through a team)."""
ALL_MODELS = "all-proxy-models"
"""LiteLLM's model name meaning "every model"."""

_USER_ROLES_IN = {
    "proxy_admin": UserRole.ADMIN,
    "proxy_admin_viewer": UserRole.AUDITOR,
    "internal_user": UserRole.NONE,
    "internal_user_viewer": UserRole.NONE,
    "team": UserRole.NONE,
    "customer": UserRole.NONE,
}
_USER_ROLES_OUT = {
    UserRole.ADMIN: "proxy_admin",
    UserRole.OPERATOR: "proxy_admin",
    UserRole.AUDITOR: "proxy_admin_viewer",
    UserRole.NONE: "internal_user",
}
_MONTHS = re.compile(r"^(\d+)\s*mo$")
_SLUG_JUNK = re.compile(r"[^a-z0-9]+")


def user_role(name: str | None) -> UserRole:
    """A LiteLLM ``user_role`` as portal's global user role."""
    if name is None:
        return UserRole.NONE
    try:
        return _USER_ROLES_IN[name]
    except KeyError:
        raise ValidationFailedError(
            "invalid user_role", {"user_role": "one of " + ", ".join(_USER_ROLES_IN)}
        ) from None


def member_role(name: str | None) -> MembershipRole:
    """A LiteLLM team member role (``admin`` or ``user``) as a membership role."""
    if name in (None, "user", "member"):
        return MembershipRole.MEMBER
    if name in ("admin", "tenant_admin"):
        return MembershipRole.TENANT_ADMIN
    raise ValidationFailedError("invalid member role", {"role": "admin or user"})


def grant_pairs(models: list[str], *, anchor: bool) -> list[tuple[str, str]]:
    """The grants that give a subject LiteLLM's ``models`` list.

    ``anchor``: whether the subject is the most general level of its keys (a team, a user, or a key
    with neither). An empty list means every model: a ``*`` grant on an anchor, no grant (inherit)
    on a key below a team or a user. ``["no-default-models"]`` means nothing at all.
    """
    names = list(dict.fromkeys(m.strip() for m in models if m.strip()))
    if names == [NO_MODELS]:
        return []
    names = [m for m in names if m != NO_MODELS]
    if not names or ALL_MODELS in names or "*" in names:
        return [("*", "*")] if anchor else []
    return [(name, "*") for name in names]


def _models(pairs: list[tuple[str, str]], *, anchor: bool) -> list[str]:
    if not pairs:
        return [NO_MODELS] if anchor else []
    if ("*", "*") in pairs:
        return []
    return list(dict.fromkeys(model for model, _ in pairs))


def is_anchor(key: ApiKey) -> bool:
    """Whether ``key`` anchors its own access (no team and no user above it)."""
    return key.tenant_id is None and key.user_id is None


def _plus_months(moment: dt.datetime, months: int) -> dt.datetime:
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def _length(text: str, field: str) -> dt.timedelta | int:
    """A LiteLLM duration: a timedelta, or a number of calendar months (``1mo``, ``monthly``)."""
    value = text.strip().lower()
    months = _MONTHS.match(value)
    if months is not None and int(months.group(1)) > 0:
        return int(months.group(1))
    try:
        kind = parse_period(value)
    except InvalidPeriod:
        raise ValidationFailedError(
            f"invalid {field}", {field: f"{text!r}: use e.g. 30s, 30m, 30h, 30d, 2w, 1mo"}
        ) from None
    return 1 if isinstance(kind, str) else kind


def expiry(duration: str | None, now: dt.datetime) -> dt.datetime | None:
    """When a key made now with LiteLLM's ``duration`` expires (``None`` or ``"-1"``: never)."""
    if duration is None or duration.strip() in ("", "-1"):
        return None
    length = _length(duration, "duration")
    return _plus_months(now, length) if isinstance(length, int) else now + length


def seconds(duration: str | None, field: str) -> int:
    """A LiteLLM duration in whole seconds (0 for none)."""
    if duration is None or not duration.strip():
        return 0
    length = _length(duration, field)
    if isinstance(length, int):
        now = dt.datetime.now(dt.UTC)
        return int((_plus_months(now, length) - now).total_seconds())
    return int(length.total_seconds())


def slug_of(text: str) -> str:
    """A tenant slug made from a team alias or id (lowercase letters, digits and dashes)."""
    slug = _SLUG_JUNK.sub("-", text.lower()).strip("-")[:64].strip("-")
    return slug or "team"


def _money(value: Any) -> float | None:
    return None if value is None else float(value)


class Views:
    """Builds LiteLLM-shaped dicts within one request, remembering the users and teams it looked up;
    ``sees`` (the caller's) hides the teams a tenant admin may not see."""

    def __init__(self, session: AsyncSession, sees: Callable[[uuid.UUID | None], bool] | None = None) -> None:
        self.session = session
        self.sees = sees or (lambda tenant_id: True)
        self._user_refs: dict[uuid.UUID, str] = {}
        self._tenants: dict[uuid.UUID, Tenant | None] = {}

    async def user_ref(self, user_id: uuid.UUID | None) -> str | None:
        """The LiteLLM ``user_id`` of portal user ``user_id``."""
        if user_id is None:
            return None
        if user_id not in self._user_refs:
            try:
                user = await get_user(self.session, user_id)
                self._user_refs[user_id] = user.external_id or str(user.id)
            except NotFoundError:
                self._user_refs[user_id] = str(user_id)
        return self._user_refs[user_id]

    async def tenant(self, tenant_id: uuid.UUID | None) -> Tenant | None:
        if tenant_id is None:
            return None
        if tenant_id not in self._tenants:
            try:
                self._tenants[tenant_id] = await get_tenant(self.session, tenant_id)
            except NotFoundError:
                self._tenants[tenant_id] = None
        return self._tenants[tenant_id]

    async def budget(self, subject_type: SubjectType, subject_id: uuid.UUID) -> Budget | None:
        """The subject's USD budget (LiteLLM's ``max_budget``), if it has one."""
        rows = await list_budgets(self.session, subject_type=subject_type, subject_id=subject_id)
        return next((b for b in rows if b.kind == BudgetKind.USD), None)

    async def models(self, subject_type: SubjectType, subject_id: uuid.UUID, *, anchor: bool) -> list[str]:
        grants = await list_grants(self.session, subject_type=subject_type, subject_id=subject_id)
        return _models([(g.model_pattern, g.provider_pattern) for g in grants], anchor=anchor)

    async def _budget_fields(self, subject_type: SubjectType, subject_id: uuid.UUID) -> dict[str, Any]:
        budget = await self.budget(subject_type, subject_id)
        return {
            "max_budget": _money(budget.amount) if budget else None,
            "budget_duration": budget.period if budget else None,
            "budget_reset_at": budget.reset_at if budget else None,
        }

    async def key(self, key: ApiKey) -> dict[str, Any]:
        """A key as LiteLLM's ``LiteLLM_VerificationToken``."""
        tenant = await self.tenant(key.tenant_id)
        return {
            "token": str(key.id),
            "key_name": key.key_prefix,
            "key_alias": key.alias,
            "spend": float(key.spend_total),
            **await self._budget_fields(SubjectType.KEY, key.id),
            "expires": key.expires_at,
            "models": await self.models(SubjectType.KEY, key.id, anchor=is_anchor(key)),
            "user_id": await self.user_ref(key.user_id),
            "team_id": str(key.tenant_id) if key.tenant_id else None,
            "team_alias": tenant.name if tenant else None,
            "max_parallel_requests": key.max_parallel,
            "tpm_limit": key.tpm_limit,
            "rpm_limit": key.rpm_limit,
            "metadata": dict(key.metadata_ or {}),
            "blocked": key.status == KeyStatus.BLOCKED,
            "status": key.status,
            "created_by": key.created_by,
            "created_at": key.created_at,
            "updated_at": key.updated_at,
            "last_used_at": key.last_used_at,
        }

    async def user(self, user: User, *, key_count: bool = False) -> dict[str, Any]:
        """A user as LiteLLM's ``LiteLLM_UserTable`` (with ``key_count`` on lists)."""
        teams = [
            str(m.tenant_id) for m in await user_tenants(self.session, user.id) if self.sees(m.tenant_id)
        ]
        view: dict[str, Any] = {
            "user_id": user.external_id or str(user.id),
            "user_alias": user.display_name or None,
            "user_email": user.email,
            "user_role": _USER_ROLES_OUT.get(UserRole(user.role), "internal_user"),
            "teams": teams,
            "spend": float(user.spend_total),
            **await self._budget_fields(SubjectType.USER, user.id),
            "models": await self.models(SubjectType.USER, user.id, anchor=True),
            "tpm_limit": user.tpm_limit,
            "rpm_limit": user.rpm_limit,
            "max_parallel_requests": user.max_parallel,
            "metadata": dict(user.metadata_ or {}),
            "created_at": user.created_at,
            "updated_at": user.updated_at,
        }
        if key_count:
            view["key_count"] = len(await self.keys_of(user_id=user.id))
        return view

    async def team(self, tenant: Tenant) -> dict[str, Any]:
        """A tenant as LiteLLM's ``LiteLLM_TeamTable``."""
        members = await list_members(self.session, tenant.id)
        with_roles = []
        for membership, user in members:
            role = "admin" if membership.role == MembershipRole.TENANT_ADMIN else "user"
            with_roles.append(
                {"user_id": user.external_id or str(user.id), "user_email": user.email, "role": role}
            )
        return {
            "team_id": str(tenant.id),
            "team_alias": tenant.name,
            "team_slug": tenant.slug,
            "organization_id": None,
            "admins": [m["user_id"] for m in with_roles if m["role"] == "admin"],
            "members": [m["user_id"] for m in with_roles],
            "members_with_roles": with_roles,
            "metadata": dict(tenant.metadata_ or {}),
            "tpm_limit": tenant.tpm_limit,
            "rpm_limit": tenant.rpm_limit,
            "max_parallel_requests": tenant.max_parallel,
            **await self._budget_fields(SubjectType.TENANT, tenant.id),
            "models": await self.models(SubjectType.TENANT, tenant.id, anchor=True),
            "blocked": tenant.status == TenantStatus.SUSPENDED,
            "spend": float(tenant.spend_total),
            "created_at": tenant.created_at,
            "updated_at": tenant.updated_at,
        }

    async def keys_of(
        self, *, user_id: uuid.UUID | None = None, tenant_id: uuid.UUID | None = None
    ) -> list[ApiKey]:
        """Every proxy key of a user or a tenant (that the caller may see)."""
        found: list[ApiKey] = []
        after: uuid.UUID | None = None
        while True:
            rows = await list_keys(
                self.session, user_id=user_id, tenant_id=tenant_id, admin=False, after=after, limit=1000
            )
            found.extend(k for k in rows[:1000] if self.sees(k.tenant_id))
            if len(rows) <= 1000:
                return found
            after = rows[999].id

    async def spend_log(self, row: RequestLog) -> dict[str, Any]:
        """A request log row as LiteLLM's ``LiteLLM_SpendLogs``."""
        ended = row.created_at + dt.timedelta(milliseconds=row.latency_ms)
        first = row.created_at + dt.timedelta(milliseconds=row.ttft_ms) if row.ttft_ms is not None else ended
        return {
            "request_id": row.request_id,
            "call_type": _CALL_TYPES.get(row.endpoint, row.endpoint),
            "api_key": str(row.api_key_id) if row.api_key_id else "",
            "spend": float(row.cost),
            "total_tokens": row.total_tokens,
            "prompt_tokens": row.prompt_tokens,
            "completion_tokens": row.completion_tokens,
            "startTime": row.created_at,
            "endTime": ended,
            "completionStartTime": first,
            "model": row.model or "",
            "model_id": str(row.deployment_id) if row.deployment_id else "",
            "model_group": row.model or "",
            "custom_llm_provider": row.provider or "",
            "api_base": "",
            "user": await self.user_ref(row.user_id) or "",
            "team_id": str(row.tenant_id) if row.tenant_id else "",
            "end_user": "",
            "metadata": {
                "status_code": row.status_code,
                "error_type": row.error_type,
                "error_message": row.error_message,
                "key_prefix": row.key_prefix,
                "upstream_model": row.upstream_model,
                "attempts": row.attempts,
                "stream": row.stream,
                "estimated_usage": row.estimated,
            },
            "cache_hit": "True" if row.cached else "False",
            "cache_key": "",
            "request_tags": [],
            "requester_ip_address": row.client_ip or "",
            "status": "success" if row.status_code < 400 else "failure",
            "messages": row.prompt or {},
            "response": row.response or {},
        }


_CALL_TYPES = {
    "chat.completions": "acompletion",
    "completions": "atext_completion",
    "embeddings": "aembedding",
}
