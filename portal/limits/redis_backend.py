"""The Redis limiter backend: the same semantics as memory, shared by every instance, atomic in Lua.

Keys (prefix ``portal:lim:``): per budget window ``b:<id>:<period>`` with ``:spent`` (settled usage),
``:rs`` (sum reserved), ``:ra`` (hash request -> reserved) and ``:rx`` (zset request -> expiry), so a
reservation of an instance that died is released after ``RESERVATION_TTL_S``; per subject and minute
``r:<subject>:<minute>:n|t`` (requests, tokens); ``p:<subject>`` (zset of calls in flight, expiring).
A budget counter missing in Redis (first use, or Redis lost its data) is seeded from the database.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from redis.asyncio import Redis

from portal.limits.model import Admission, LimitPlan, RateSpec, Ticket, Window, minute_of
from portal.limits.windows import denial_message, rate_headers, windows_for

__all__ = ["RedisBackend"]

PREFIX = "portal:lim:"
RESERVATION_TTL_S = 900

_ADMIT = """
local now = tonumber(ARGV[1])
local rid = ARGV[2]
local ttl = tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
local nb = tonumber(ARGV[5])
local i = 6
local function purge(base)
  local expired = redis.call('ZRANGEBYSCORE', base .. ':rx', '-inf', now)
  for _, r in ipairs(expired) do
    local amount = redis.call('HGET', base .. ':ra', r)
    if amount then
      redis.call('DECRBY', base .. ':rs', amount)
      redis.call('HDEL', base .. ':ra', r)
    end
    redis.call('ZREM', base .. ':rx', r)
  end
end
local budgets = {}
for b = 1, nb do
  local base, amount, need = ARGV[i], tonumber(ARGV[i+1]), tonumber(ARGV[i+2])
  local seed, expires = ARGV[i+3], tonumber(ARGV[i+4])
  i = i + 5
  if expires > 0 then
    redis.call('SET', base .. ':spent', seed, 'NX', 'PXAT', expires)
  else
    redis.call('SET', base .. ':spent', seed, 'NX')
  end
  purge(base)
  local spent = tonumber(redis.call('GET', base .. ':spent') or '0')
  local reserved = tonumber(redis.call('GET', base .. ':rs') or '0')
  if spent + reserved + need > amount then
    return {'budget', b, tostring(spent), tostring(reserved)}
  end
  budgets[b] = {base, need, expires}
end
local nr = tonumber(ARGV[i])
i = i + 1
local rates = {}
for r = 1, nr do
  local subject, minute = ARGV[i], ARGV[i+4]
  local rpm, tpm, par = tonumber(ARGV[i+1]), tonumber(ARGV[i+2]), tonumber(ARGV[i+3])
  i = i + 5
  local wn = 'r:' .. subject .. ':' .. minute
  local used = tonumber(redis.call('GET', ARGV[i] .. wn .. ':n') or '0')
  local used_tokens = tonumber(redis.call('GET', ARGV[i] .. wn .. ':t') or '0')
  if rpm >= 0 and used + 1 > rpm then return {'rpm', r, tostring(used), tostring(used_tokens)} end
  if tpm >= 0 and used_tokens + tokens > tpm then return {'tpm', r, tostring(used), tostring(used_tokens)} end
  local pk = ARGV[i] .. 'p:' .. subject
  if par >= 0 then
    redis.call('ZREMRANGEBYSCORE', pk, '-inf', now)
    if redis.call('ZCARD', pk) >= par then return {'parallel', r, '0', '0'} end
  end
  rates[r] = {ARGV[i] .. wn, pk, par}
  i = i + 1
end
for _, b in ipairs(budgets) do
  local base, need, expires = b[1], b[2], b[3]
  redis.call('INCRBY', base .. ':rs', need)
  redis.call('HSET', base .. ':ra', rid, need)
  redis.call('ZADD', base .. ':rx', now + ttl, rid)
  if expires > 0 then
    for _, suffix in ipairs({':rs', ':ra', ':rx'}) do redis.call('PEXPIREAT', base .. suffix, expires) end
  end
end
local out = {'ok'}
for _, r in ipairs(rates) do
  local n = redis.call('INCR', r[1] .. ':n')
  local t = redis.call('INCRBY', r[1] .. ':t', tokens)
  redis.call('PEXPIRE', r[1] .. ':n', 120000)
  redis.call('PEXPIRE', r[1] .. ':t', 120000)
  if r[3] >= 0 then
    redis.call('ZADD', r[2], now + ttl, rid)
    redis.call('PEXPIRE', r[2], ttl)
  end
  table.insert(out, tostring(n))
  table.insert(out, tostring(t))
end
return out
"""

_SETTLE = """
local rid = ARGV[1]
local cost = tonumber(ARGV[2])
local tokens = tonumber(ARGV[3])
local delta_tokens = tonumber(ARGV[4])
local nb = tonumber(ARGV[5])
local i = 6
local out = {}
for b = 1, nb do
  local base, kind = ARGV[i], ARGV[i+1]
  i = i + 2
  local amount = redis.call('HGET', base .. ':ra', rid)
  if amount then
    redis.call('DECRBY', base .. ':rs', amount)
    redis.call('HDEL', base .. ':ra', rid)
    redis.call('ZREM', base .. ':rx', rid)
  end
  local add = cost
  if kind == 'tokens' then add = tokens end
  local after = redis.call('INCRBY', base .. ':spent', add)
  table.insert(out, tostring(after - add))
  table.insert(out, tostring(after))
end
local nr = tonumber(ARGV[i])
i = i + 1
for r = 1, nr do
  local wn, pk = ARGV[i], ARGV[i+1]
  i = i + 2
  if redis.call('EXISTS', wn .. ':t') == 1 then
    local t = redis.call('INCRBY', wn .. ':t', delta_tokens)
    if t < 0 then redis.call('SET', wn .. ':t', 0, 'KEEPTTL') end
  end
  redis.call('ZREM', pk, rid)
end
return out
"""


def _limit(value: int | None) -> int:
    return -1 if value is None else value


class RedisBackend:
    """Limiter counters in Redis; every admission and settlement is one atomic script call."""

    name = "redis"

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._admit = redis.register_script(_ADMIT)
        self._settle = redis.register_script(_SETTLE)

    async def admit(
        self, plan: LimitPlan, request_id: str, cost: int, tokens: int, now: dt.datetime
    ) -> Admission:
        windows = windows_for(plan, now)
        minute = minute_of(now)
        args: list[Any] = [
            int(now.timestamp() * 1000),
            request_id,
            RESERVATION_TTL_S * 1000,
            tokens,
            len(windows),
        ]
        wanted: list[tuple[Window, int]] = []
        for window in windows:
            need = cost if window.spec.kind == "usd" else tokens
            wanted.append((window, need))
            args += [PREFIX + "b:" + window.key, window.spec.amount, need, window.seed(), window.expires_ms()]
        args.append(len(plan.rates))
        for rate in plan.rates:
            args += [rate.subject, _limit(rate.rpm), _limit(rate.tpm), _limit(rate.parallel), minute, PREFIX]
        result = [x.decode() if isinstance(x, bytes) else str(x) for x in await self._admit(args=args)]
        if result[0] == "budget":
            window = windows[int(result[1]) - 1]
            return Admission(None, *denial_message(window, int(result[2]), int(result[3])))
        if result[0] in {"rpm", "tpm", "parallel"}:
            rate = plan.rates[int(result[1]) - 1]
            reset = 60 - now.timestamp() % 60
            if result[0] == "parallel":
                return Admission(None, "parallel", rate.level, f"{rate.parallel} parallel requests", 1.0)
            headers = rate_headers([(rate, int(result[2]), int(result[3]))], now)
            limit = (
                f"{rate.rpm} requests per minute" if result[0] == "rpm" else f"{rate.tpm} tokens per minute"
            )
            return Admission(None, result[0], rate.level, limit, reset, headers)
        counts: list[tuple[RateSpec, int, int]] = [
            (rate, int(result[1 + 2 * n]), int(result[2 + 2 * n])) for n, rate in enumerate(plan.rates)
        ]
        ticket = Ticket(request_id, wanted, list(plan.rates), minute, tokens, cost)
        return Admission(ticket, headers=rate_headers(counts, now))

    async def settle(self, ticket: Ticket, cost: int, tokens: int) -> list[tuple[Window, int, int]]:
        args: list[Any] = [
            ticket.request_id,
            cost,
            tokens,
            tokens - ticket.estimated_tokens,
            len(ticket.windows),
        ]
        for window, _ in ticket.windows:
            args += [PREFIX + "b:" + window.key, window.spec.kind]
        args.append(len(ticket.rates))
        for rate in ticket.rates:
            args += [f"{PREFIX}r:{rate.subject}:{ticket.minute}", f"{PREFIX}p:{rate.subject}"]
        result = [int(x) for x in await self._settle(args=args)]
        return [(window, result[2 * n], result[2 * n + 1]) for n, (window, _) in enumerate(ticket.windows)]

    async def usage(self, plan: LimitPlan, now: dt.datetime) -> dict[str, tuple[int, int]]:
        minute = minute_of(now)
        pipe = self.redis.pipeline(transaction=False)
        windows = windows_for(plan, now)
        for window in windows:
            pipe.get(PREFIX + "b:" + window.key + ":spent")
            pipe.get(PREFIX + "b:" + window.key + ":rs")
        for rate in plan.rates:
            pipe.get(f"{PREFIX}r:{rate.subject}:{minute}:n")
            pipe.get(f"{PREFIX}r:{rate.subject}:{minute}:t")
        values = [int(v) if v is not None else None for v in await pipe.execute()]
        out: dict[str, tuple[int, int]] = {}
        for n, window in enumerate(windows):
            spent = values[2 * n]
            out[window.spec.id] = (window.seed() if spent is None else spent, values[2 * n + 1] or 0)
        base = 2 * len(windows)
        for n, rate in enumerate(plan.rates):
            out[f"rate:{rate.subject}"] = (values[base + 2 * n] or 0, values[base + 2 * n + 1] or 0)
        return out

    async def reset(self, budget_id: str) -> None:
        async for key in self.redis.scan_iter(match=f"{PREFIX}b:{budget_id}:*", count=500):
            await self.redis.delete(key)

    async def ping(self) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        return None
