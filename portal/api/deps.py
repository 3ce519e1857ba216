"""Request-scoped dependencies of the admin surfaces: one transaction per request, and the caller.

The transaction commits after the handler returns and rolls back if it raises; the change's effects
(key cache invalidation, catalog reload, budget counter resets) are applied only after the commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from sqlalchemy.ext.asyncio import AsyncSession

from portal.auth.admin import AdminCaller, provide_caller
from portal.db.effects import apply_effects, take_effects
from portal.proxy.gateway import Gateway
from portal.state import AppResources

__all__ = ["ADMIN_DEPENDENCIES", "Caller", "Db", "Gw", "provide_db", "provide_gateway"]

# Handler parameter types for the dependencies below (``db: Db``, ``caller: Caller``, ``gateway: Gw``).
Db = NamedDependency[AsyncSession]
Caller = NamedDependency[AdminCaller]


async def provide_db(state: State) -> AsyncIterator[AsyncSession]:
    """A session in a transaction for the whole request."""
    resources: AppResources = state.resources
    gateway: Gateway = state.gateway
    async with resources.sessions() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()
        await apply_effects(gateway, take_effects(session))


def provide_gateway(state: State) -> Gateway:
    gateway: Gateway = state.gateway
    return gateway


Gw = NamedDependency[Gateway]

ADMIN_DEPENDENCIES = {
    "db": Provide(provide_db),
    "caller": Provide(provide_caller),
    "gateway": Provide(provide_gateway, sync_to_thread=False),
}
