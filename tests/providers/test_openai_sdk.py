"""The official ``openai`` SDK against the fake OpenAI server, proving the fake speaks the real format."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest

from tests.fakes import Behaviour, FakeUpstream


@pytest.fixture
async def sdk(fake_openai: FakeUpstream) -> AsyncIterator[openai.AsyncOpenAI]:
    http_client = openai.DefaultAsyncHttpxClient(trust_env=False)
    client = openai.AsyncOpenAI(
        base_url=fake_openai.base_url + "/v1",
        api_key=fake_openai.api_key,
        http_client=http_client,
        max_retries=0,
    )
    yield client
    await client.close()


async def test_sdk_chat_stream_embeddings_and_errors(
    sdk: openai.AsyncOpenAI, fake_openai: FakeUpstream
) -> None:
    completion = await sdk.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], seed=7
    )
    assert completion.choices[0].message.content == "Hello from the fake upstream."
    assert completion.usage is not None
    assert completion.usage.total_tokens == 18
    assert fake_openai.last.json["seed"] == 7

    fake_openai.script(Behaviour(text="streamed words", chunks=2))
    stream = await sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    usage_total = None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            usage_total = chunk.usage.total_tokens
    assert "".join(pieces) == "streamed words"
    assert usage_total == 18

    embedded = await sdk.embeddings.create(model="text-embedding-3-small", input=["a", "b"], dimensions=16)
    assert fake_openai.last.json["encoding_format"] == "base64"
    assert [len(item.embedding) for item in embedded.data] == [16, 16]

    fake_openai.fail(429, "slow down")
    with pytest.raises(openai.RateLimitError, match="slow down"):
        await sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


async def test_sdk_rejected_with_wrong_key(fake_openai: FakeUpstream) -> None:
    async with openai.AsyncOpenAI(
        base_url=fake_openai.base_url + "/v1",
        api_key="sk-nope",
        http_client=openai.DefaultAsyncHttpxClient(trust_env=False),
        max_retries=0,
    ) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
