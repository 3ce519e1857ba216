"""Tool calls end to end through the gateway (OpenAI and Anthropic upstreams, official SDK),
per-deployment timeouts, and the key cache's staleness bound for changes made elsewhere."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from openai import AsyncOpenAI
from sqlalchemy import update

from portal.db.models import ApiKey, KeyStatus
from tests.fakes.server import Behaviour, FakeUpstream
from tests.proxy.conftest import Running

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


@pytest.fixture
async def sdk(gw: Running) -> AsyncIterator[AsyncOpenAI]:
    secret, _, _ = await gw.new_key()
    client = AsyncOpenAI(
        api_key=secret, base_url=f"{gw.url}/v1", max_retries=0, http_client=httpx.AsyncClient(trust_env=False)
    )
    yield client
    await client.close()


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet"])
async def test_tool_call_round_trip(
    sdk: AsyncOpenAI, model: str, fake_openai: FakeUpstream, fake_anthropic: FakeUpstream
) -> None:
    for fake in (fake_openai, fake_anthropic):
        fake.script(
            Behaviour(tool_calls=[("get_weather", {"city": "Rome"})]), Behaviour(text="Sunny in Rome.")
        )
    messages: list[dict[str, object]] = [{"role": "user", "content": "Weather in Rome?"}]
    first = await sdk.chat.completions.create(model=model, messages=messages, tools=TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Rome"}
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"forecast": "sunny"}'},
    ]
    second = await sdk.chat.completions.create(model=model, messages=messages, tools=TOOLS)
    assert second.choices[0].message.content == "Sunny in Rome."


async def test_streamed_tool_call(sdk: AsyncOpenAI, fake_openai: FakeUpstream) -> None:
    fake_openai.script(Behaviour(tool_calls=[("get_weather", {"city": "Oslo"})]))
    stream = await sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Oslo?"}],
        tools=TOOLS,
        stream=True,
    )
    arguments = ""
    name = None
    async for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                if call.function is not None:
                    name = call.function.name or name
                    arguments += call.function.arguments or ""
    assert name == "get_weather"
    assert json.loads(arguments) == {"city": "Oslo"}


async def test_slow_deployment_times_out_and_falls_back(
    gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream
) -> None:
    secret, _, _ = await gw.new_key()
    entry = gw.gateway.catalog.get("gpt-4o-mini")
    assert entry is not None
    original = entry.deployments[0]
    entry.deployments[0] = dataclasses.replace(
        original, target=dataclasses.replace(original.target, timeout_s=0.3), max_retries=0
    )
    try:
        fake_openai.script(Behaviour(delay=2.0))
        response = await http.post(
            "/v1/chat/completions",
            headers={"x-api-key": secret},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert response.status_code == 504
        assert "timed out" in response.json()["error"]["message"]
    finally:
        entry.deployments[0] = original


async def test_change_made_elsewhere_is_seen_within_the_cache_ttl(
    gw: Running, http: httpx.AsyncClient, fake_openai: FakeUpstream
) -> None:
    secret, key_id, _ = await gw.new_key()
    headers = {"x-api-key": secret}
    assert (await http.get("/v1/models", headers=headers)).status_code == 200
    async with gw.sessions() as session, session.begin():
        await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(status=KeyStatus.BLOCKED))
    cache = gw.gateway.keys
    assert (await http.get("/v1/models", headers=headers)).status_code == 200, "cached: not seen yet"
    for entry in cache._entries.values():
        entry.fresh_until = 0.0
    assert (await http.get("/v1/models", headers=headers)).status_code == 401, "seen once the TTL ran out"
