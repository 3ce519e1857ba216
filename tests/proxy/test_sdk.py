"""The official ``openai`` SDK pointed at the gateway: chat (plain, streaming), embeddings, models,
and what reaches the upstream (unknown fields pass through; client routing fields do not)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from openai import AsyncOpenAI, AuthenticationError, NotFoundError, PermissionDeniedError

from tests.fakes.server import Behaviour, FakeUpstream
from tests.proxy.conftest import Running


@pytest.fixture
async def sdk(gw: Running) -> AsyncIterator[AsyncOpenAI]:
    secret, _, _ = await gw.new_key()
    client = AsyncOpenAI(
        api_key=secret, base_url=f"{gw.url}/v1", max_retries=0, http_client=httpx.AsyncClient(trust_env=False)
    )
    yield client
    await client.close()


async def test_chat_plain(sdk: AsyncOpenAI, fake_openai: FakeUpstream) -> None:
    fake_openai.script(Behaviour(text="Hi there!", prompt_tokens=12, completion_tokens=3))
    reply = await sdk.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}]
    )
    assert reply.choices[0].message.content == "Hi there!"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (12, 3)
    sent = fake_openai.last
    assert sent.json["model"] == "gpt-4o-mini"
    assert sent.headers["authorization"] == f"Bearer {fake_openai.api_key}"


async def test_chat_streaming(sdk: AsyncOpenAI, fake_openai: FakeUpstream) -> None:
    fake_openai.script(Behaviour(text="one two three four", chunks=4))
    stream = await sdk.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "count"}], stream=True
    )
    text = ""
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
    assert text == "one two three four"
    assert fake_openai.last.json["stream_options"] == {"include_usage": True}


async def test_embeddings(sdk: AsyncOpenAI, fake_openai: FakeUpstream) -> None:
    result = await sdk.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(result.data) == 2
    assert len(result.data[0].embedding) > 0
    assert fake_openai.last.path.endswith("/embeddings")


async def test_models(sdk: AsyncOpenAI) -> None:
    names = [m.id async for m in sdk.models.list()]
    assert "gpt-4o-mini" in names
    assert "claude-sonnet" in names


async def test_unknown_fields_pass_through_and_routing_fields_do_not(
    sdk: AsyncOpenAI, fake_openai: FakeUpstream
) -> None:
    await sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "json please"}],
        seed=7,
        response_format={"type": "json_object"},
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        extra_body={
            "api_base": "http://evil.example",
            "base_url": "http://evil.example",
            "vendor_flag": True,
        },
    )
    sent = fake_openai.last.json
    assert sent["seed"] == 7
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["tools"][0]["function"]["name"] == "f"
    assert sent["vendor_flag"] is True
    assert "api_base" not in sent
    assert "base_url" not in sent


async def test_sdk_sees_openai_errors(gw: Running, sdk: AsyncOpenAI) -> None:
    with pytest.raises(NotFoundError):
        await sdk.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    bad = AsyncOpenAI(
        api_key="sk-wrong-key-000",
        base_url=f"{gw.url}/v1",
        max_retries=0,
        http_client=httpx.AsyncClient(trust_env=False),
    )
    with pytest.raises(AuthenticationError, match="Invalid API Key"):
        await bad.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    await bad.close()
    secret, _, _ = await gw.new_key(grants=[("claude-*", "*")])
    limited = AsyncOpenAI(
        api_key=secret, base_url=f"{gw.url}/v1", max_retries=0, http_client=httpx.AsyncClient(trust_env=False)
    )
    with pytest.raises(PermissionDeniedError, match="gpt-4o-mini"):
        await limited.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    await limited.close()


@pytest.mark.parametrize(
    "model", ["claude-sonnet", "gemini-flash", "anthropic.claude-3-sonnet-20240229-v1:0"]
)
async def test_other_providers_through_the_sdk(
    sdk: AsyncOpenAI,
    model: str,
    fake_anthropic: FakeUpstream,
    fake_gemini: FakeUpstream,
    fake_bedrock: FakeUpstream,
) -> None:
    for fake in (fake_anthropic, fake_gemini, fake_bedrock):
        fake.default = Behaviour(text="translated", prompt_tokens=5, completion_tokens=2)
    reply = await sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "translated"
    assert reply.usage is not None
    assert reply.usage.total_tokens == 7
    stream = await sdk.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = ""
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
    assert text == "translated"
