"""What the proxy hands the writer for each call: one :class:`CallRecord`, built on the request path."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = ["CallRecord"]


@dataclass(slots=True)
class CallRecord:
    """One proxied call, successful or not; becomes one ``request_logs`` row and feeds the rollups."""

    request_id: str
    created_at: dt.datetime
    status_code: int
    endpoint: str = "chat.completions"
    tenant_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    key_prefix: str | None = None
    model: str | None = None
    deployment_id: uuid.UUID | None = None
    provider: str | None = None
    upstream_model: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal = field(default_factory=Decimal)
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    stream: bool = False
    cached: bool = False
    estimated: bool = False
    attempts: int = 1
    client_ip: str | None = None
    budgeted: bool = False
    """Whether any level of the caller has a budget (only then is ``budgets.used`` updated)."""
    tenant_slug: str | None = None
    client_id: str | None = None
    """The key's alias, else its display prefix (the metrics' and access log's client label)."""
    upstream_ms: float = 0.0
    """Time spent waiting on the upstream (the rest of ``latency_ms`` is the gateway's overhead)."""
    denied: str | None = None
    """The limit that refused the call (``rpm``, ``tpm``, ``parallel``, ``budget``, ``quota``)."""
    denied_level: str | None = None
    cache_checked: bool = False
    prompt_payload: Any = None
    """The request's messages/prompt/input when the tenant stores payloads; redacted by the writer."""
    response_payload: Any = None
    """The upstream's answer (JSON bytes, or a list of SSE frames) when the tenant stores payloads."""

    @property
    def is_error(self) -> bool:
        return self.status_code >= 400
