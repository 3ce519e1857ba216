"""The self-service page of tenant admins and members (issue 7, item 9): ``/my`` shows, for each of the
person's own tenants, their role, the spend of the last 30 days and in all, what is left of each budget,
and the tenant's keys (with links to create and revoke them on the key pages, which hold a member to
the tenant's limits).

Only the person's memberships are read: another tenant never appears here, and every link leads to a
page that answers 404 for a tenant that is not theirs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from litestar import Request, get
from litestar.response import Template
from litestar.types import ControllerRouterHandler
from sqlalchemy.ext.asyncio import AsyncSession

from portal.api.deps import Db
from portal.api.schemas import money
from portal.auth.person import PersonMembership, page
from portal.db.models import ApiKey, Budget, SubjectType, Tenant
from portal.keys import service as keys
from portal.limits import budgets
from portal.spend import queries
from portal.tenants import service
from portal.timeutil import utcnow
from portal.web.pages import render, signed_in

__all__ = ["PAGES", "MyTenant"]

RECENT_DAYS = 30
KEYS_SHOWN = 20


@dataclass(slots=True)
class MyTenant:
    """One of the person's tenants as the self-service page shows it."""

    membership: PersonMembership
    tenant: Tenant
    lifetime_cost: Decimal = Decimal(0)
    recent_cost: Decimal = Decimal(0)
    recent_requests: int = 0
    budgets: list[tuple[Budget, Decimal]] = field(default_factory=list)
    keys: list[ApiKey] = field(default_factory=list)
    more_keys: bool = False


async def _my_tenant(db: AsyncSession, membership: PersonMembership, since: dt.date) -> MyTenant:
    tenant = await service.get_tenant(db, str(membership.tenant_id))
    mine = MyTenant(membership, tenant, lifetime_cost=Decimal(tenant.spend_total or 0))
    rows = await queries.spend_report(db, group_by=[], tenant_id=tenant.id, start=since, end=utcnow().date())
    mine.recent_cost = sum((r.cost for r in rows), Decimal(0))
    mine.recent_requests = sum(r.requests for r in rows)
    for budget in await budgets.list_budgets(db, subject_type=SubjectType.TENANT, subject_id=tenant.id):
        mine.budgets.append((budget, max(Decimal(budget.amount - budget.used), Decimal(0))))
    found = list(await keys.list_keys(db, tenant_id=tenant.id, admin=False, limit=KEYS_SHOWN))
    mine.keys, mine.more_keys = found[:KEYS_SHOWN], len(found) > KEYS_SHOWN
    return mine


@get("/my", name="my:tenants", opt=page("signed_in"))
async def my_tenants(request: Request[Any, Any, Any], db: Db) -> Template:
    """The person's tenants: role, recent and lifetime spend, budgets left, keys."""
    person = await signed_in(request)
    since = utcnow().date() - dt.timedelta(days=RECENT_DAYS - 1)
    tenants = [await _my_tenant(db, m, since) for m in person.memberships]
    context: dict[str, Any] = {"tenants": tenants, "since": since, "money": money, "days": RECENT_DAYS}
    return await render(request, "tenants/my.html", context)


PAGES: list[ControllerRouterHandler] = [my_tenants]
