"""Routing: which deployment serves a call, and what happens when one fails.

For a public model the router takes the deployments that serve the caller's tenant (its per-tenant
overrides, else the shared ones), keeps those whose provider the caller's grants allow, and orders
them by weighted random choice, deployments in cooldown last. Each deployment is tried up to
``1 + max_retries`` times with exponential backoff (with jitter) on retryable failures (connect
errors, timeouts, 429, 5xx); then the next deployment; then the model's fallbacks, in order, each
subject to the same grant check. A non-retryable upstream answer (a 4xx such as a bad request) is
passed back at once with the upstream's message.

Cooldown: after ``allowed_fails`` consecutive retryable failures, or any 429, a deployment rests for
``cooldown_s`` (or the upstream's ``Retry-After``, capped); a success clears its record. Streams are
retried only before their first byte.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from portal.catalog.registry import Catalog, DeploymentInfo, ModelEntry
from portal.ops.metrics import upstream_error
from portal.proxy.principal import Principal
from portal.proxy.providers import get_adapter
from portal.proxy.providers.base import ProviderAdapter, UpstreamClient, UpstreamError

__all__ = ["CallOutcome", "ModelDenied", "ModelNotFound", "NoDeployment", "RouteFailure", "Router"]

T = TypeVar("T")
MAX_RETRY_AFTER_S = 60.0


class ModelNotFound(Exception):
    """No such public model."""


class ModelDenied(Exception):
    """The principal's grants do not allow the model (on any of its providers)."""

    def __init__(self, model: str, level: str) -> None:
        super().__init__(model)
        self.model = model
        self.level = level


class NoDeployment(Exception):
    """The model exists but none of its deployments can be called (misconfigured)."""


class RouteFailure(Exception):
    """The call failed: ``error`` is the last upstream error, after ``attempts`` attempts in all."""

    def __init__(self, error: UpstreamError, attempts: int, deployment: DeploymentInfo) -> None:
        super().__init__(error.message)
        self.error = error
        self.attempts = attempts
        self.deployment = deployment


@dataclass(slots=True)
class CallOutcome(Generic[T]):
    """The result of a routed call: what answered and after how many attempts."""

    result: T
    deployment: DeploymentInfo
    attempts: int


@dataclass(slots=True)
class _Health:
    failures: int = 0
    cooldown_until: float = 0.0


class Router:
    """Chooses deployments and drives retries, cooldowns and fallbacks."""

    def __init__(
        self,
        client: UpstreamClient,
        *,
        allowed_fails: int = 2,
        cooldown_s: float = 30.0,
        backoff_base_s: float = 0.1,
        backoff_max_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.allowed_fails = allowed_fails
        self.cooldown_s = cooldown_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - load spreading, not security
        self._health: dict[str, _Health] = {}

    def cooldown_state(self) -> dict[str, float]:
        """Seconds of cooldown left per deployment id (only those cooling down)."""
        now = self._clock()
        return {k: h.cooldown_until - now for k, h in self._health.items() if h.cooldown_until > now}

    def resolve(self, catalog: Catalog, principal: Principal, model: str) -> ModelEntry:
        """The model entry if it exists and the principal may use it; raises otherwise."""
        entry = catalog.get(model)
        if entry is None:
            raise ModelNotFound(model)
        providers = entry.providers_for(principal.tenant_id) or {""}
        denials = [principal.access.denial(model, p) for p in providers]
        if all(d is not None for d in denials):
            raise ModelDenied(model, next(d for d in denials if d is not None))
        return entry

    def _ordered(self, entry: ModelEntry, principal: Principal) -> list[DeploymentInfo]:
        usable = [
            d
            for d in entry.deployments_for(principal.tenant_id)
            if d.problem is None and d.weight > 0 and principal.access.allows(entry.name, d.provider)
        ]
        if len(usable) <= 1:
            return usable
        now = self._clock()
        warm = [d for d in usable if self._health.get(d.id, _Health()).cooldown_until <= now]
        cold = [d for d in usable if d not in warm]
        ordered: list[DeploymentInfo] = []
        while warm:
            pick = self._rng.choices(warm, weights=[d.weight for d in warm])[0]
            ordered.append(pick)
            warm.remove(pick)
        return ordered + cold

    def _record_failure(self, deployment: DeploymentInfo, error: UpstreamError) -> None:
        health = self._health.setdefault(deployment.id, _Health())
        health.failures += 1
        if error.status == 429 or health.failures > self.allowed_fails:
            rest = min(error.retry_after, MAX_RETRY_AFTER_S) if error.retry_after else self.cooldown_s
            health.cooldown_until = self._clock() + rest

    def _record_success(self, deployment: DeploymentInfo) -> None:
        if deployment.id in self._health:
            del self._health[deployment.id]

    def _backoff(self, attempt: int, error: UpstreamError) -> float:
        if error.retry_after is not None and error.retry_after <= self.backoff_max_s:
            return float(error.retry_after)
        delay = min(self.backoff_max_s, self.backoff_base_s * (2.0**attempt))
        return delay * (0.5 + self._rng.random() / 2)

    async def call(
        self,
        catalog: Catalog,
        principal: Principal,
        model: str,
        invoke: Callable[[ProviderAdapter, UpstreamClient, DeploymentInfo], Awaitable[T]],
        entry: ModelEntry | None = None,
    ) -> CallOutcome[T]:
        """Run ``invoke`` on the best deployment of ``model``, with retries and fallbacks.

        ``entry`` is the model's entry when the caller already resolved it for this principal.
        """
        entry = entry or self.resolve(catalog, principal, model)
        chain: list[ModelEntry] = [entry]
        for name in entry.fallbacks:
            fallback = catalog.get(name)
            if fallback is not None and fallback not in chain and self._allowed(fallback, principal):
                chain.append(fallback)
        plan = [d for candidate in chain for d in self._ordered(candidate, principal)]
        if not plan:
            raise NoDeployment(model)
        attempts = 0
        last: tuple[UpstreamError, DeploymentInfo] | None = None
        for position, deployment in enumerate(plan):
            adapter = get_adapter(deployment.provider)
            has_alternative = position < len(plan) - 1
            for attempt in range(deployment.max_retries + 1):
                attempts += 1
                try:
                    result = await invoke(adapter, self.client, deployment)
                except UpstreamError as error:
                    upstream_error(deployment.provider, deployment.model_name, error.status, error.message)
                    if not error.retryable:
                        raise RouteFailure(error, attempts, deployment) from error
                    last = (error, deployment)
                    self._record_failure(deployment, error)
                    if attempt < deployment.max_retries and not (
                        has_alternative and self._cooling(deployment)
                    ):
                        await asyncio.sleep(self._backoff(attempt, error))
                        continue
                    break
                self._record_success(deployment)
                return CallOutcome(result, deployment, attempts)
        assert last is not None
        raise RouteFailure(last[0], attempts, last[1]) from last[0]

    def _cooling(self, deployment: DeploymentInfo) -> bool:
        health = self._health.get(deployment.id)
        return health is not None and health.cooldown_until > self._clock()

    def _allowed(self, entry: ModelEntry, principal: Principal) -> bool:
        try:
            self.resolve(Catalog({entry.name: entry}), principal, entry.name)
        except (ModelNotFound, ModelDenied):
            return False
        return True
