"""What the proxy hands the writer for each call: one :class:`CallRecord`, built on the request path."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

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

    @property
    def is_error(self) -> bool:
        return self.status_code >= 400
