"""Request bodies of the LiteLLM compatible admin routes, with LiteLLM's own field names.

Unknown fields are ignored (as LiteLLM's request models do), so scripts that send fields portal has
no use for (``send_invite_email``, ``aliases``, ``config``...) keep working. Money arrives as a JSON
number and is decoded straight to an exact :class:`~decimal.Decimal`. In update bodies an absent
field is ``UNSET`` (left alone), while ``null`` clears the value.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

import msgspec

__all__ = [
    "KeyDelete",
    "KeyGenerate",
    "KeyRef",
    "KeyRegenerate",
    "KeyUpdate",
    "Member",
    "TeamDelete",
    "TeamMemberAdd",
    "TeamMemberDelete",
    "TeamNew",
    "TeamUpdate",
    "UserDelete",
    "UserNew",
    "UserUpdate",
]

Amount = Decimal  # negative amounts are refused by set_budget
Limit = Annotated[int, msgspec.Meta(ge=1, le=10**12)]
Unset = msgspec.UnsetType
UNSET = msgspec.UNSET


class KeyGenerate(msgspec.Struct, kw_only=True):
    """``POST /key/generate``."""

    key_alias: str | None = None
    duration: str | None = None
    models: list[str] | None = None
    max_budget: Amount | None = None
    budget_duration: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    metadata: dict[str, Any] | None = None
    tpm_limit: Limit | None = None
    rpm_limit: Limit | None = None
    max_parallel_requests: Limit | None = None
    key: str | None = None
    blocked: bool | None = None


class KeyUpdate(msgspec.Struct, kw_only=True):
    """``POST /key/update``: ``key`` is the secret, the key's id (``token``) or its hash."""

    key: str
    key_alias: str | Unset | None = UNSET
    duration: str | Unset | None = UNSET
    models: list[str] | Unset | None = UNSET
    max_budget: Amount | Unset | None = UNSET
    budget_duration: str | Unset | None = UNSET
    user_id: str | Unset | None = UNSET
    team_id: str | Unset | None = UNSET
    metadata: dict[str, Any] | Unset | None = UNSET
    tpm_limit: Limit | Unset | None = UNSET
    rpm_limit: Limit | Unset | None = UNSET
    max_parallel_requests: Limit | Unset | None = UNSET
    blocked: bool | Unset | None = UNSET


class KeyRegenerate(msgspec.Struct, kw_only=True):
    """``POST /key/regenerate`` (or ``/key/{key}/regenerate``): a new secret for the same key settings.

    ``new_key`` chooses the new secret; ``grace_period`` (``"24h"``) keeps the old secret working that
    long. The other fields change the key at the same time, as in ``/key/update``.
    """

    key: str | None = None
    new_key: str | None = None
    grace_period: str | None = None
    key_alias: str | Unset | None = UNSET
    duration: str | Unset | None = UNSET
    models: list[str] | Unset | None = UNSET
    max_budget: Amount | Unset | None = UNSET
    budget_duration: str | Unset | None = UNSET
    metadata: dict[str, Any] | Unset | None = UNSET
    tpm_limit: Limit | Unset | None = UNSET
    rpm_limit: Limit | Unset | None = UNSET
    max_parallel_requests: Limit | Unset | None = UNSET


class KeyDelete(msgspec.Struct, kw_only=True):
    """``POST /key/delete``: keys by secret, id or hash, and/or by alias."""

    keys: list[str] | None = None
    key_aliases: list[str] | None = None


class KeyRef(msgspec.Struct, kw_only=True):
    """``POST /key/block`` and ``/key/unblock``."""

    key: str


class UserNew(msgspec.Struct, kw_only=True):
    """``POST /user/new``: a user, its budget and models, and (unless ``auto_create_key`` is false) a key."""

    user_id: str | None = None
    user_alias: str | None = None
    user_email: str | None = None
    user_role: str | None = None
    teams: list[str] | None = None
    team_id: str | None = None
    max_budget: Amount | None = None
    budget_duration: str | None = None
    models: list[str] | None = None
    tpm_limit: Limit | None = None
    rpm_limit: Limit | None = None
    max_parallel_requests: Limit | None = None
    metadata: dict[str, Any] | None = None
    auto_create_key: bool = True
    key_alias: str | None = None
    duration: str | None = None


class UserUpdate(msgspec.Struct, kw_only=True):
    """``POST /user/update``: the user by ``user_id`` (or by ``user_email`` when no id is given)."""

    user_id: str | None = None
    user_email: str | Unset | None = UNSET
    user_alias: str | Unset | None = UNSET
    user_role: str | Unset | None = UNSET
    max_budget: Amount | Unset | None = UNSET
    budget_duration: str | Unset | None = UNSET
    models: list[str] | Unset | None = UNSET
    tpm_limit: Limit | Unset | None = UNSET
    rpm_limit: Limit | Unset | None = UNSET
    max_parallel_requests: Limit | Unset | None = UNSET
    metadata: dict[str, Any] | Unset | None = UNSET


class UserDelete(msgspec.Struct, kw_only=True):
    """``POST /user/delete``."""

    user_ids: list[str]


class Member(msgspec.Struct, kw_only=True):
    """A team member: ``role`` is ``admin`` or ``user``; the user by ``user_id`` or ``user_email``."""

    role: str = "user"
    user_id: str | None = None
    user_email: str | None = None


class TeamNew(msgspec.Struct, kw_only=True):
    """``POST /team/new``: a tenant. ``team_id`` (if given) becomes the tenant's slug."""

    team_alias: str | None = None
    team_id: str | None = None
    members_with_roles: list[Member] | None = None
    metadata: dict[str, Any] | None = None
    tpm_limit: Limit | None = None
    rpm_limit: Limit | None = None
    max_parallel_requests: Limit | None = None
    max_budget: Amount | None = None
    budget_duration: str | None = None
    models: list[str] | None = None
    blocked: bool = False


class TeamUpdate(msgspec.Struct, kw_only=True):
    """``POST /team/update``."""

    team_id: str
    team_alias: str | Unset | None = UNSET
    metadata: dict[str, Any] | Unset | None = UNSET
    tpm_limit: Limit | Unset | None = UNSET
    rpm_limit: Limit | Unset | None = UNSET
    max_parallel_requests: Limit | Unset | None = UNSET
    max_budget: Amount | Unset | None = UNSET
    budget_duration: str | Unset | None = UNSET
    models: list[str] | Unset | None = UNSET
    blocked: bool | Unset | None = UNSET


class TeamDelete(msgspec.Struct, kw_only=True):
    """``POST /team/delete``."""

    team_ids: list[str]


class TeamMemberAdd(msgspec.Struct, kw_only=True):
    """``POST /team/member_add``: one member or a list."""

    team_id: str
    member: Member | list[Member]


class TeamMemberDelete(msgspec.Struct, kw_only=True):
    """``POST /team/member_delete``."""

    team_id: str
    user_id: str | None = None
    user_email: str | None = None
