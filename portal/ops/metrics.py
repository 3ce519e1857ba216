"""Prometheus metrics: their definitions, the per-batch aggregation of call records, and the exposition.

The proxy never touches a metric on the request path. Each :class:`~portal.spend.records.CallRecord`
reaches :func:`observe_calls` from the batched writer's loop (about once a second, off the request
path), which aggregates the batch's counters by label set and looks label children up in small caches
(``.labels()`` is slow). ``portal_budget_remaining`` is read from the database when scraped.

Several worker processes (``portal serve --workers N``) share one ``PROMETHEUS_MULTIPROC_DIR``
(:mod:`portal.ops.multiproc` prepares it); the exposition then merges every process's files, so a
scrape answered by any worker shows the totals of all of them.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from portal.spend.records import CallRecord

__all__ = [
    "INFERENCE_ENDPOINTS",
    "WRITER_FLUSHES",
    "WRITER_FLUSH_ERRORS",
    "WRITER_QUEUE",
    "BudgetRow",
    "exposition",
    "multiprocess_enabled",
    "observe_calls",
    "upstream_error",
]

INFERENCE_ENDPOINTS = frozenset({"chat.completions", "completions", "embeddings"})
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_OVERHEAD_BUCKETS = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_MAX_CHILDREN = 20_000
"""Label-child cache size after which a cache is dropped (it refills from prometheus_client's own)."""

REQUESTS = Counter(
    "portal_requests", "Inference calls on /v1, refusals included", ["model", "provider", "status"]
)
DURATION = Histogram(
    "portal_request_duration_seconds",
    "Whole inference call, as the gateway saw it",
    ["model", "provider"],
    buckets=_LATENCY_BUCKETS,
)
TTFT = Histogram(
    "portal_time_to_first_token_seconds",
    "Streams: time to the first content chunk",
    ["model", "provider"],
    buckets=_LATENCY_BUCKETS,
)
OVERHEAD = Histogram(
    "portal_gateway_overhead_seconds",
    "Call time not spent waiting on the upstream",
    buckets=_OVERHEAD_BUCKETS,
)
CLIENT_REQUESTS = Counter("portal_client_requests", "Calls per client (key)", ["tenant", "client_id"])
CLIENT_ERRORS = Counter(
    "portal_client_errors", "Failed calls (status >= 400) per client", ["tenant", "client_id"]
)
CLIENT_TOKENS = Counter("portal_client_tokens", "Tokens per client", ["tenant", "client_id", "type"])
CLIENT_COST = Counter("portal_client_cost_usd", "Cost in USD per client", ["tenant", "client_id"])
LIMIT_DENIALS = Counter("portal_limit_denials", "Calls refused by a limit", ["kind", "level"])
CACHE_HITS = Counter("portal_cache_hits", "Completion cache hits", ["model"])
CACHE_MISSES = Counter("portal_cache_misses", "Completion cache misses", ["model"])
WRITER_QUEUE = Gauge(
    "portal_writer_queue_depth", "Call records waiting for the batched writer", multiprocess_mode="livesum"
)
WRITER_FLUSHES = Counter("portal_writer_flushes", "Batches the writer wrote")
WRITER_FLUSH_ERRORS = Counter("portal_writer_flush_errors", "Batches the writer failed to write (retried)")
UPSTREAM_ERRORS = Counter(
    "portal_upstream_errors",
    "Failed upstream attempts (each retry or failover counts)",
    ["provider", "model", "reason"],
)

_timing: dict[tuple[str, str], tuple[Any, Any]] = {}
_counters: dict[tuple[Any, tuple[str, ...]], Any] = {}


def multiprocess_enabled() -> bool:
    """Whether metrics live in ``PROMETHEUS_MULTIPROC_DIR`` files shared by several processes."""
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ


def _timers(model: str, provider: str) -> tuple[Any, Any]:
    pair = _timing.get((model, provider))
    if pair is None:
        if len(_timing) > _MAX_CHILDREN:
            _timing.clear()
        pair = _timing[(model, provider)] = (
            DURATION.labels(model, provider),
            TTFT.labels(model, provider),
        )
    return pair


def _child(metric: Any, labels: tuple[str, ...]) -> Any:
    child = _counters.get((metric, labels))
    if child is None:
        if len(_counters) > _MAX_CHILDREN:
            _counters.clear()
        child = _counters[(metric, labels)] = metric.labels(*labels)
    return child


class _Observations:
    """One batch's observations of one histogram child: added with ONE increment per bucket touched
    and one to the sum (each increment is a lock and, with several workers, a file write)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.total = 0.0

    def add(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def commit(self, child: Any) -> None:
        child._sum.inc(self.total)
        for bucket, count in zip(child._buckets, self.counts, strict=True):
            if count:
                bucket.inc(count)


def _batched(child: Any) -> bool:
    """Whether this prometheus_client's histogram children have the internals batching relies on."""
    return all(hasattr(child, name) for name in ("_upper_bounds", "_buckets", "_sum"))


_BATCHED = _batched(OVERHEAD)


def _observe(histograms: dict[Any, _Observations], child: Any, value: float) -> None:
    if not _BATCHED:
        child.observe(value)
        return
    seen = histograms.get(child)
    if seen is None:
        seen = histograms[child] = _Observations(child._upper_bounds)
    seen.add(value)


def observe_calls(records: Iterable[CallRecord]) -> None:
    """Account a batch of finished calls in the metrics (summed per label set and bucket first)."""
    counts: dict[tuple[Any, tuple[str, ...]], float] = defaultdict(float)
    histograms: dict[Any, _Observations] = {}
    for r in records:
        if r.endpoint not in INFERENCE_ENDPOINTS:
            continue
        provider = r.provider or ""
        # A model that does not exist is not a label value: clients must not be able to mint series.
        model = "" if r.status_code == 404 and not provider else (r.model or "")
        duration, ttft = _timers(model, provider)
        latency = r.latency_ms / 1000
        _observe(histograms, duration, latency)
        if r.ttft_ms is not None:
            _observe(histograms, ttft, r.ttft_ms / 1000)
        _observe(histograms, OVERHEAD, max(0.0, latency - r.upstream_ms / 1000))
        counts[(REQUESTS, (model, provider, str(r.status_code)))] += 1
        if r.client_id is not None:
            client = (r.tenant_slug or "", r.client_id)
            counts[(CLIENT_REQUESTS, client)] += 1
            if r.status_code >= 400:
                counts[(CLIENT_ERRORS, client)] += 1
            if r.prompt_tokens:
                counts[(CLIENT_TOKENS, (*client, "prompt"))] += r.prompt_tokens
            if r.completion_tokens:
                counts[(CLIENT_TOKENS, (*client, "completion"))] += r.completion_tokens
            if r.cost:
                counts[(CLIENT_COST, client)] += float(r.cost)
        if r.denied is not None:
            counts[(LIMIT_DENIALS, (r.denied, r.denied_level or ""))] += 1
        if r.cached:
            counts[(CACHE_HITS, (model,))] += 1
        elif r.cache_checked:
            counts[(CACHE_MISSES, (model,))] += 1
    for (metric, labels), amount in counts.items():
        _child(metric, labels).inc(amount)
    for child, seen in histograms.items():
        seen.commit(child)


def upstream_error(provider: str, model: str, status: int, message: str) -> None:
    """Count one failed upstream attempt; ``reason`` is a small fixed set derived from the status."""
    if status == 429:
        reason = "rate_limited"
    elif status == 504:
        reason = "timeout"
    elif status == 502 and "connection" in message:
        reason = "connect"
    elif status >= 500:
        reason = "server_error"
    else:
        reason = "client_error"
    _child(UPSTREAM_ERRORS, (provider, model, reason)).inc()


BudgetRow = tuple[str, str, str, float]
"""(subject type, subject name, unit, remaining)."""


class _Budgets:
    """A one-scrape collector for ``portal_budget_remaining`` from rows read just before."""

    def __init__(self, rows: list[BudgetRow]) -> None:
        self._rows = rows

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "portal_budget_remaining",
            "What is left of each budget in its current period (usd or tokens)",
            labels=["subject_type", "subject", "unit"],
        )
        for subject_type, subject, unit, remaining in self._rows:
            family.add_metric([subject_type, subject, unit], remaining)
        yield family


def exposition(budgets: list[BudgetRow] | None) -> bytes:
    """The text exposition of every metric (all worker processes merged in multiprocess mode)."""
    if multiprocess_enabled():
        registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    if budgets is not None:
        extra = CollectorRegistry(auto_describe=False)
        extra.register(_Budgets(budgets))
        body += generate_latest(extra)
    return body
