"""The completion cache: opt-in, exact match, a hit costs nothing and is marked cached."""

from __future__ import annotations

from decimal import Decimal

import httpx
from sqlalchemy import update

from portal.db.models import ApiKey
from tests.fakes.server import FakeUpstream
from tests.proxy.conftest import Running


async def test_cache_is_opt_in_and_hits_are_free(
    gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream
) -> None:
    secret, key_id, _ = await gw.new_key()
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "cache me"}], "temperature": 0}
    headers = {"x-api-key": secret}
    await http.post("/v1/chat/completions", json=body, headers=headers)
    await http.post("/v1/chat/completions", json=body, headers=headers)
    assert len(fake_openai.requests) == 2, "no caching unless enabled"
    async with gw.sessions() as session, session.begin():
        await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(cache_enabled=True))
    gw.gateway.keys.invalidate()
    first = await http.post("/v1/chat/completions", json=body, headers=headers)
    second = await http.post("/v1/chat/completions", json=body, headers=headers)
    assert first.headers["x-portal-cache"] == "miss"
    assert second.headers["x-portal-cache"] == "hit"
    assert second.json() == first.json()
    assert len(fake_openai.requests) == 3
    different = await http.post(
        "/v1/chat/completions",
        headers=headers,
        json={**body, "messages": [{"role": "user", "content": "other"}]},
    )
    assert different.headers["x-portal-cache"] == "miss"
    rows = await gw.logs(key_id)
    hit = [r for r in rows if r.cached]
    assert len(hit) == 1
    assert hit[0].cost == Decimal(0)
