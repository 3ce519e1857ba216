"""The per-batch aggregation of call records into Prometheus metrics matches observing one by one."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Histogram

from portal.ops import metrics
from portal.spend.records import CallRecord


def _record(latency_ms: float, **fields: object) -> CallRecord:
    record = CallRecord(
        request_id=uuid.uuid4().hex,
        created_at=dt.datetime.now(dt.UTC),
        status_code=200,
        latency_ms=latency_ms,
    )
    for name, value in fields.items():
        setattr(record, name, value)
    return record


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_batched_histograms_equal_single_observations() -> None:
    model = f"unit-{uuid.uuid4().hex[:8]}"
    latencies = [5.0, 10.0, 7.5, 0.1, 99.0, 250.0, 60_000.0, 200_000.0, 5.0]
    records = [
        _record(ms, model=model, provider="mock", upstream_ms=ms / 2, ttft_ms=ms / 4) for ms in latencies
    ]
    records.append(_record(3.0, model=model, endpoint="models"))  # not an inference call
    reference = Histogram(
        "ref_seconds", "reference", buckets=metrics.DURATION._kwargs["buckets"], registry=CollectorRegistry()
    )
    for ms in latencies:
        reference.observe(ms / 1000)
    expected = {
        str(s.labels["le"]): s.value for s in reference.collect()[0].samples if s.name.endswith("_bucket")
    }
    metrics.observe_calls(records)
    labels = {"model": model, "provider": "mock"}
    for le, count in expected.items():
        assert _sample("portal_request_duration_seconds_bucket", **labels, le=le) == count, le
    assert _sample("portal_request_duration_seconds_count", **labels) == len(latencies)
    assert _sample("portal_request_duration_seconds_sum", **labels) == pytest.approx(sum(latencies) / 1000)
    assert _sample("portal_time_to_first_token_seconds_count", **labels) == len(latencies)
    assert _sample("portal_requests_total", **labels, status="200") == len(latencies)


def test_clients_tokens_cost_denials_and_cache() -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    model = f"m-{tenant}"
    client = {"tenant": tenant, "client_id": "ci"}
    common = {"model": model, "provider": "p", "tenant_slug": tenant, "client_id": "ci"}
    metrics.observe_calls(
        [
            _record(1, **common, prompt_tokens=10, completion_tokens=5, cost=Decimal("0.25")),
            _record(1, **common, prompt_tokens=1, cost=Decimal("0.5"), cached=True),
            _record(1, **common, status_code=429, denied="tpm", denied_level="tenant", cache_checked=True),
            _record(1, model=model, status_code=401),  # no key: no client series
        ]
    )
    assert _sample("portal_client_requests_total", **client) == 3
    assert _sample("portal_client_errors_total", **client) == 1
    assert _sample("portal_client_tokens_total", **client, type="prompt") == 11
    assert _sample("portal_client_tokens_total", **client, type="completion") == 5
    assert _sample("portal_client_cost_usd_total", **client) == 0.75
    assert _sample("portal_limit_denials_total", kind="tpm", level="tenant") >= 1
    assert _sample("portal_requests_total", model=model, provider="", status="401") == 1
    assert _sample("portal_cache_hits_total", model=model) == 1
    assert _sample("portal_cache_misses_total", model=model) == 1
