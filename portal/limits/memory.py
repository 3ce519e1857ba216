"""The in-process limiter backend: exact and atomic for one process (no await between check and
reserve), counters lost on restart (budgets are re-seeded from the database's ``used``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from portal.limits.model import Admission, LimitPlan, RateSpec, Ticket, Window, minute_of
from portal.limits.windows import denial_message, rate_headers, windows_for

__all__ = ["MemoryBackend"]

RESERVATION_TTL_S = 900.0


@dataclass(slots=True)
class _Budget:
    spent: int
    reserved: int = 0


class MemoryBackend:
    """Budget counters per (budget, period), fixed one-minute windows, parallel counters."""

    name = "memory"

    def __init__(self) -> None:
        self._budgets: dict[str, _Budget] = {}
        self._requests: dict[tuple[str, int], int] = {}
        self._tokens: dict[tuple[str, int], int] = {}
        self._parallel: dict[str, int] = {}
        self._minute = 0

    def _roll(self, minute: int) -> None:
        if minute != self._minute:
            self._minute = minute
            for table in (self._requests, self._tokens):
                for key in [k for k in table if k[1] < minute - 1]:
                    del table[key]

    def _budget(self, window: Window) -> _Budget:
        state = self._budgets.get(window.key)
        if state is None:
            state = self._budgets[window.key] = _Budget(spent=window.seed())
        return state

    async def admit(
        self, plan: LimitPlan, request_id: str, cost: int, tokens: int, now: dt.datetime
    ) -> Admission:
        """Check every level, then reserve at every level; nothing is reserved on a denial."""
        minute = minute_of(now)
        self._roll(minute)
        windows = windows_for(plan, now)
        wanted: list[tuple[Window, int]] = []
        for window in windows:
            need = cost if window.spec.kind == "usd" else tokens
            state = self._budget(window)
            if state.spent + state.reserved + need > window.spec.amount:
                return Admission(None, *denial_message(window, state.spent, state.reserved))
            wanted.append((window, need))
        for rate in plan.rates:
            refusal = self._rate_refusal(rate, minute, tokens, now)
            if refusal is not None:
                return refusal
        for window, need in wanted:
            self._budget(window).reserved += need
        counts: list[tuple[RateSpec, int, int]] = []
        requests, spent_tokens = self._requests, self._tokens
        for rate in plan.rates:
            key = (rate.subject, minute)
            used = requests[key] = requests.get(key, 0) + 1
            used_tokens = spent_tokens[key] = spent_tokens.get(key, 0) + tokens
            if rate.parallel is not None:
                self._parallel[rate.subject] = self._parallel.get(rate.subject, 0) + 1
            counts.append((rate, used, used_tokens))
        ticket = Ticket(request_id, wanted, list(plan.rates), minute, tokens, cost)
        return Admission(ticket, headers=rate_headers(counts, now))

    def _rate_refusal(self, rate: RateSpec, minute: int, tokens: int, now: dt.datetime) -> Admission | None:
        key = (rate.subject, minute)
        used = self._requests.get(key, 0)
        spent_tokens = self._tokens.get(key, 0)
        if rate.rpm is not None and used + 1 > rate.rpm:
            headers = rate_headers([(rate, used, spent_tokens)], now)
            reset = 60 - now.timestamp() % 60
            return Admission(None, "rpm", rate.level, f"{rate.rpm} requests per minute", reset, headers)
        if rate.tpm is not None and spent_tokens + tokens > rate.tpm:
            headers = rate_headers([(rate, used, spent_tokens)], now)
            reset = 60 - now.timestamp() % 60
            return Admission(None, "tpm", rate.level, f"{rate.tpm} tokens per minute", reset, headers)
        if rate.parallel is not None and self._parallel.get(rate.subject, 0) >= rate.parallel:
            return Admission(None, "parallel", rate.level, f"{rate.parallel} parallel requests", 1.0)
        return None

    async def settle(self, ticket: Ticket, cost: int, tokens: int) -> list[tuple[Window, int, int]]:
        """Replace reservations by actual usage; returns (window, used before, used after) per budget."""
        changes: list[tuple[Window, int, int]] = []
        for window, reserved in ticket.windows:
            # A counter missing here was reset while the call ran: its usage counts in the fresh
            # period, not on top of the usage the ticket's (older) plan would seed it with.
            state = self._budgets.get(window.key) or self._budgets.setdefault(window.key, _Budget(spent=0))
            state.reserved = max(0, state.reserved - reserved)
            before = state.spent
            state.spent += cost if window.spec.kind == "usd" else tokens
            changes.append((window, before, state.spent))
        for rate in ticket.rates:
            key = (rate.subject, ticket.minute)
            if key in self._tokens:
                self._tokens[key] = max(0, self._tokens[key] + tokens - ticket.estimated_tokens)
            if rate.parallel is not None:
                self._parallel[rate.subject] = max(0, self._parallel.get(rate.subject, 0) - 1)
        return changes

    async def usage(self, plan: LimitPlan, now: dt.datetime) -> dict[str, tuple[int, int]]:
        """(used, reserved) per budget id for the current periods, and (requests, tokens) per rate subject."""
        minute = minute_of(now)
        out: dict[str, tuple[int, int]] = {}
        for window in windows_for(plan, now):
            state = self._budget(window)
            out[window.spec.id] = (state.spent, state.reserved)
        for rate in plan.rates:
            out[f"rate:{rate.subject}"] = (
                self._requests.get((rate.subject, minute), 0),
                self._tokens.get((rate.subject, minute), 0),
            )
        return out

    async def reset(self, budget_id: str) -> None:
        """Forget every counter of a budget (after an explicit reset or change of period)."""
        for key in [k for k in self._budgets if k.startswith(f"{budget_id}:")]:
            del self._budgets[key]

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
