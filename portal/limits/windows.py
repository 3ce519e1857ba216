"""Helpers shared by the backends: current budget windows, denial messages, rate-limit headers."""

from __future__ import annotations

import datetime as dt
import math

from portal.limits.model import BudgetSpec, LimitPlan, RateSpec, Window, from_nano
from portal.limits.periods import current_window

__all__ = ["denial_message", "rate_headers", "windows_for"]


_CURRENT: dict[BudgetSpec, Window] = {}
_MAX_CACHED = 50_000


def _window(spec: BudgetSpec, now: dt.datetime) -> Window:
    cached = _CURRENT.get(spec)
    if cached is not None and (
        cached.end is None or (cached.start is not None and cached.start <= now < cached.end)
    ):
        return cached
    start, end = current_window(spec.period, spec.alignment, spec.anchor, now)
    stamp = "life" if start is None else str(int(start.timestamp()))
    window = Window(spec, f"{spec.id}:{stamp}", start, end)
    if len(_CURRENT) >= _MAX_CACHED:
        _CURRENT.clear()
    _CURRENT[spec] = window
    return window


def windows_for(plan: LimitPlan, now: dt.datetime) -> list[Window]:
    """The current-period counter of every budget in ``plan`` (each computed once per period)."""
    return [_window(spec, now) for spec in plan.budgets]


def _money(value: int) -> str:
    return f"${from_nano(value).quantize(from_nano(1) * 10_000):f}".rstrip("0").rstrip(".")


def denial_message(window: Window, spent: int, reserved: int) -> tuple[str, str, str, float | None]:
    """(denied, level, detail, retry_after) for a budget or quota that cannot take the call."""
    spec = window.spec
    per = f" per {spec.period}" if spec.period else ""
    reset = f"; resets at {window.end.isoformat()}" if window.end else ""
    retry = None
    if window.end is not None:
        retry = max(1.0, (window.end - dt.datetime.now(dt.UTC)).total_seconds())
    if spec.kind == "usd":
        detail = f"{spec.level} budget of {_money(spec.amount)}{per}: {_money(spent)} spent"
        if reserved:
            detail += f", {_money(reserved)} reserved by calls in flight"
        return "budget", spec.level, detail + reset, retry
    detail = f"{spec.level} token quota of {spec.amount}{per}: {spent} used"
    if reserved:
        detail += f", {reserved} reserved by calls in flight"
    return "quota", spec.level, detail + reset, retry


def rate_headers(counts: list[tuple[RateSpec, int, int]], now: dt.datetime) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers for the tightest limited level."""
    requests: tuple[int, int] | None = None
    tokens: tuple[int, int] | None = None
    for rate, used, used_tokens in counts:
        if rate.rpm is not None and (requests is None or rate.rpm - used < requests[1]):
            requests = (rate.rpm, rate.rpm - used)
        if rate.tpm is not None and (tokens is None or rate.tpm - used_tokens < tokens[1]):
            tokens = (rate.tpm, rate.tpm - used_tokens)
    if requests is None and tokens is None:
        return {}
    reset = f"{math.ceil(60 - now.timestamp() % 60)}s"
    headers: dict[str, str] = {}
    if requests is not None:
        headers["x-ratelimit-limit-requests"] = str(requests[0])
        headers["x-ratelimit-remaining-requests"] = str(max(0, requests[1]))
        headers["x-ratelimit-reset-requests"] = reset
    if tokens is not None:
        headers["x-ratelimit-limit-tokens"] = str(tokens[0])
        headers["x-ratelimit-remaining-tokens"] = str(max(0, tokens[1]))
        headers["x-ratelimit-reset-tokens"] = reset
    return headers
