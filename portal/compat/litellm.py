"""LiteLLM compatible admin API: LiteLLM's own management routes, request fields and response shapes,
so scripts written for a LiteLLM proxy (the seed's ``litellm-users.sh``) work against portal unchanged.

Thin adapters onto the key, user, tenant, grant, budget and spend services; the mapping between the
two vocabularies is in :mod:`portal.compat.litellm_views`, the routes in ``litellm_keys``,
``litellm_users``, ``litellm_teams`` and ``litellm_spend``, what they share in ``litellm_common``.
Authentication is the admin API's own: the master key (LiteLLM's ``LITELLM_MASTER_KEY`` becomes
``PORTAL_MASTER_KEY``) or an admin key, sent as ``Authorization: Bearer`` (or ``x-litellm-api-key``);
each route needs one permission. Errors are LiteLLM's ``{"error": {"message", "type", "param",
"code"}}`` (:mod:`portal.compat.litellm_errors`). Every POST answers 200, as LiteLLM does.

Routes:

- keys: ``POST /key/generate`` (keys:write) -> the key with its secret in ``key`` (shown only here);
  ``POST /key/update`` ``{key, ...}``; ``POST /key/delete`` ``{keys, key_aliases}`` ->
  ``{"deleted_keys": [...]}``; ``GET /key/info?key=`` -> ``{"key", "info"}``; ``GET /key/list``
  (``page``, ``size``, ``user_id``, ``team_id``, ``key_alias``, ``return_full_object``) ->
  ``{"keys", "total_count", "current_page", "total_pages"}``; ``POST /key/regenerate`` (or
  ``/key/{key}/regenerate``) -> the new secret; ``POST /key/block`` / ``/key/unblock``. A key is named by
  its secret, its ``token`` (the key id) or its hash.
- users: ``POST /user/new`` -> the user and (unless ``auto_create_key`` is false) a key for it;
  ``GET /user/info?user_id=`` -> ``{"user_id", "user_info", "keys", "teams"}``; ``GET /user/list``
  (``page``, ``page_size``, ``role``, ``user_ids``, ``user_email``, ``team``) -> ``{"users", "total",
  "page", "page_size", "total_pages"}``; ``POST /user/update`` -> ``{"user_id", "data"}``;
  ``POST /user/delete`` ``{user_ids}`` -> the number of users deleted (their keys go too).
- teams (tenants): ``POST /team/new``, ``GET /team/info?team_id=`` -> ``{"team_id", "team_info",
  "keys", "team_memberships"}``, ``GET /team/list``, ``POST /team/update`` -> ``{"team_id", "data"}``,
  ``POST /team/delete`` ``{team_ids}`` -> ``{"deleted_teams": [...]}``, ``POST /team/member_add``,
  ``POST /team/member_delete``.
- spend: ``GET /spend/logs`` (``api_key``, ``user_id``, ``request_id``, ``start_date``, ``end_date``,
  ``summarize``) -> LiteLLM ``SpendLogs`` rows, or with both dates (and ``summarize``, the default)
  one row per day ``{"startTime", "spend", "models", "users", <key>: spend}``; ``GET /global/spend``
  -> ``{"spend", "max_budget"}`` over the last 30 days; ``GET /global/spend/keys`` and
  ``/global/spend/models`` (``limit``) -> the top spenders over the last 30 days.

A tenant admin key acts within its tenant: its keys and users land there, it sees only its tenant's
keys, members and spend, and it may not set user-level budgets, models or limits (they apply in every
tenant a user belongs to).
"""

from __future__ import annotations

from litestar import Router
from litestar.types import ControllerRouterHandler

from portal.api.deps import ADMIN_DEPENDENCIES
from portal.auth.admin import admin_guard
from portal.compat.litellm_errors import LITELLM_ERROR_HANDLERS, litellm_key_header
from portal.compat.litellm_keys import KEY_ROUTES
from portal.compat.litellm_spend import SPEND_ROUTES
from portal.compat.litellm_teams import TEAM_ROUTES
from portal.compat.litellm_users import USER_ROUTES

__all__ = ["ROUTES", "compat_router"]

ROUTES: list[ControllerRouterHandler] = [*KEY_ROUTES, *USER_ROUTES, *TEAM_ROUTES, *SPEND_ROUTES]


def compat_router() -> Router:
    """The LiteLLM routes at the root path, behind the admin guard, with LiteLLM-style errors."""
    return Router(
        path="/",
        route_handlers=ROUTES,
        guards=[admin_guard],
        dependencies=ADMIN_DEPENDENCIES,
        exception_handlers=LITELLM_ERROR_HANDLERS,
        middleware=[litellm_key_header],
        tags=["LiteLLM compatible"],
        security=[{"adminKey": []}],
    )
