"""What a committed change means for running gateways: forget cached keys, reload the catalog, clear
live budget counters.

Services only *note* effects on the session (:func:`note`); whoever owns the transaction applies them
after the commit succeeds (:func:`apply_effects` in a server process, :func:`publish_effects` from
the CLI), so a rolled-back change never invalidates anything and a committed one always does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from portal.proxy.gateway import Gateway

__all__ = ["Effects", "apply_effects", "note", "publish_effects", "take_effects"]

_INFO_KEY = "portal.effects"


@dataclass(slots=True)
class Effects:
    """Pending effects of one transaction."""

    key_hashes: set[str] = field(default_factory=set)
    everything: bool = False
    catalog: bool = False
    budget_resets: set[uuid.UUID] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.key_hashes or self.everything or self.catalog or self.budget_resets)


def note(
    session: AsyncSession,
    *,
    key_hashes: Iterable[str] = (),
    everything: bool = False,
    catalog: bool = False,
    budget_resets: Iterable[uuid.UUID] = (),
) -> None:
    """Record effects of the change being made in ``session``'s transaction."""
    effects: Effects = session.info.setdefault(_INFO_KEY, Effects())
    effects.key_hashes.update(key_hashes)
    effects.everything = effects.everything or everything
    effects.catalog = effects.catalog or catalog
    effects.budget_resets.update(budget_resets)


def take_effects(session: AsyncSession) -> Effects:
    """The effects noted on ``session`` (now cleared)."""
    effects: Effects = session.info.pop(_INFO_KEY, None) or Effects()
    return effects


async def apply_effects(gateway: Gateway, effects: Effects) -> None:
    """Apply committed effects in this process and announce them to the other instances."""
    if effects.everything:
        gateway.invalidate()
    else:
        for key_hash in effects.key_hashes:
            gateway.invalidate(key_hash)
    for budget_id in effects.budget_resets:
        await gateway.limiter.backend.reset(str(budget_id))
    if effects.budget_resets and not effects.everything:
        gateway.invalidate()
    if effects.catalog:
        from portal.proxy.gateway import CATALOG_MESSAGE

        await gateway.reload_catalog()
        gateway.announce(CATALOG_MESSAGE)


async def publish_effects(redis: Redis | None, effects: Effects) -> None:
    """From a process without a gateway (the CLI): tell running instances over Redis.

    Without Redis, running instances see the change within ``key_cache_ttl_s`` and
    ``catalog_refresh_s``.
    """
    if redis is None or not effects:
        return
    from portal.proxy.gateway import CATALOG_MESSAGE, INVALIDATION_CHANNEL

    if effects.everything or effects.budget_resets:
        await redis.publish(INVALIDATION_CHANNEL, "*")
    else:
        for key_hash in effects.key_hashes:
            await redis.publish(INVALIDATION_CHANNEL, key_hash)
    if effects.catalog:
        await redis.publish(INVALIDATION_CHANNEL, CATALOG_MESSAGE)
