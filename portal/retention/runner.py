"""The periodic retention task every instance runs: every ``retention_interval_s`` (the first run one
interval after start), it tries :func:`~portal.retention.service.run_retention`; the guard lets one
instance at a time do the work, the others find it busy and wait for the next round."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.audit.service import Actor
from portal.config import Settings
from portal.retention.service import run_retention

__all__ = ["RETENTION_ACTOR", "RetentionRunner"]

log = logging.getLogger(__name__)
RETENTION_ACTOR = Actor(type="system", label="retention")


class RetentionRunner:
    """Start with :meth:`start`, stop with :meth:`close` (the app's lifespan does both)."""

    def __init__(
        self, settings: Settings, sessions: async_sessionmaker[AsyncSession], redis: Redis | None
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.redis = redis
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        """Whether any table has a retention period (0 everywhere: nothing to do, no task)."""
        return self.settings.request_log_retention_days > 0 or self.settings.audit_retention_days > 0

    def start(self) -> None:
        """Start the periodic task (if any retention is configured)."""
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._forever(), name="portal-retention")

    async def run_once(self) -> None:
        """One round; failures are logged and retried next round."""
        try:
            report = await run_retention(self.settings, self.sessions, self.redis, RETENTION_ACTOR)
        except Exception:
            log.warning("retention run failed; will retry", exc_info=True)
            return
        for table in report.tables:
            if table.deleted:
                log.info(
                    "retention: deleted %d %s rows older than %s", table.deleted, table.table, table.cutoff
                )

    async def _forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.retention_interval_s)
            await self.run_once()

    async def close(self) -> None:
        """Stop the task (a batch in progress is rolled back)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
