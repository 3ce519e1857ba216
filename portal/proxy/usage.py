"""``GET /v1/me/usage``: what the calling key has used and has left (the LLM Server seed's fields).

``quota_used``/``quota_monthly``/``quota_reset_at`` describe the key's token quota; ``rpm_limit``
and ``rpm_remaining`` its requests-per-minute limit. ``levels`` gives, for the key, its user and its
tenant: lifetime ``spend`` and, per budget, its amount, period, usage in the current period, what
calls in flight have reserved, and when the period resets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from portal.db.models import ApiKey, Tenant, User
from portal.limits.model import from_nano
from portal.limits.windows import windows_for
from portal.proxy.principal import Principal
from portal.timeutil import utcnow

if TYPE_CHECKING:
    from portal.proxy.gateway import Gateway

__all__ = ["usage_report"]


async def _lifetime_spend(gateway: Gateway, principal: Principal) -> dict[str, str]:
    out: dict[str, str] = {}
    async with gateway.sessions() as session:
        for level, table, subject in (
            ("key", ApiKey, principal.key_id),
            ("user", User, principal.user_id),
            ("tenant", Tenant, principal.tenant_id),
        ):
            if subject is not None:
                value = await session.scalar(select(table.spend_total).where(table.id == subject))
                out[level] = str(value if value is not None else 0)
    return out


async def usage_report(gateway: Gateway, principal: Principal) -> dict[str, Any]:
    """The usage document for ``principal``."""
    now = utcnow()
    plan = principal.plan
    counters = await gateway.limiter.usage(plan, now) if not plan.empty else {}
    spend = await _lifetime_spend(gateway, principal)
    levels: dict[str, dict[str, Any]] = {
        level: {"spend": amount, "budgets": []} for level, amount in spend.items()
    }
    report: dict[str, Any] = {
        "key_prefix": principal.key_prefix,
        "tenant": principal.tenant_slug,
        "quota_used": None,
        "quota_monthly": None,
        "quota_reset_at": None,
        "rpm_limit": None,
        "rpm_remaining": None,
        "levels": levels,
    }
    for window in windows_for(plan, now):
        spec = window.spec
        used, reserved = counters.get(spec.id, (window.seed(), 0))
        money = spec.kind == "usd"
        entry = {
            "kind": spec.kind,
            "max_budget": str(from_nano(spec.amount)) if money else spec.amount,
            "period": spec.period,
            "used": str(from_nano(used)) if money else used,
            "reserved": str(from_nano(reserved)) if money else reserved,
            "period_start": window.start.isoformat() if window.start else None,
            "reset_at": window.end.isoformat() if window.end else None,
        }
        levels.setdefault(spec.level, {"spend": None, "budgets": []})["budgets"].append(entry)
        if spec.level == "key" and spec.kind == "tokens":
            report["quota_used"] = used
            report["quota_monthly"] = spec.amount
            report["quota_reset_at"] = entry["reset_at"]
    for rate in plan.rates:
        if rate.level == "key" and rate.rpm is not None:
            requests, _ = counters.get(f"rate:{rate.subject}", (0, 0))
            report["rpm_limit"] = rate.rpm
            report["rpm_remaining"] = max(0, rate.rpm - requests)
    key_limits = principal.limits.get("key")
    if report["rpm_limit"] is None and key_limits is not None and key_limits.rpm is not None:
        report["rpm_limit"] = key_limits.rpm
        report["rpm_remaining"] = key_limits.rpm
    return report
