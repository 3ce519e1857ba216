"""The offline mock provider: deterministic answers, usage, streaming, embeddings and scripted failures."""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from portal.proxy.providers import get_adapter
from portal.proxy.providers.base import Target, UpstreamClient, UpstreamError, Usage
from portal.proxy.tokens import estimate_prompt_tokens, estimate_tokens

from .helpers import DONE, drain, json_of

MOCK = Target("mock", "mock-chat")
CHAT: dict[str, Any] = {
    "model": "m",
    "messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "What is  the answer?"}],
}


class _NoNetwork(UpstreamClient):
    async def post(self, target: Target, url: str, headers: Mapping[str, str], content: bytes) -> Any:
        raise AssertionError(f"mock provider made a network call to {url}")

    async def open_stream(self, target: Target, url: str, headers: Mapping[str, str], content: bytes) -> Any:
        raise AssertionError(f"mock provider made a network call to {url}")


@pytest.fixture
async def offline() -> AsyncIterator[UpstreamClient]:
    client = _NoNetwork()
    yield client
    assert "not started" in repr(client)
    await client.aclose()


async def test_chat_is_deterministic(offline: UpstreamClient) -> None:
    adapter = get_adapter("mock")
    first = await adapter.chat(offline, MOCK, CHAT)
    second = await adapter.chat(offline, MOCK, CHAT)
    answer = json_of(first.body)
    assert answer["choices"][0]["message"]["content"] == "Mock response to: What is the answer?"
    assert json_of(second.body)["choices"] == answer["choices"]
    assert answer["id"] == json_of(second.body)["id"]
    text = "Mock response to: What is the answer?"
    assert first.usage == Usage(estimate_prompt_tokens(CHAT), estimate_tokens(text))
    assert answer["usage"]["total_tokens"] == first.usage.total_tokens


async def test_long_prompt_is_truncated_in_answer_and_max_tokens_gives_length(
    offline: UpstreamClient,
) -> None:
    body = {"messages": [{"role": "user", "content": "word " * 100}], "max_tokens": 2}
    result = await get_adapter("mock").chat(offline, MOCK, body)
    choice = json_of(result.body)["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] == "Mock res"


async def test_stream_matches_chat(offline: UpstreamClient) -> None:
    adapter = get_adapter("mock")
    body = CHAT | {"stream": True, "stream_options": {"include_usage": True}}
    stream = await adapter.stream_chat(offline, MOCK, body)
    drained = await drain(stream)
    chat = await adapter.chat(offline, MOCK, CHAT)

    assert drained.text == json_of(chat.body)["choices"][0]["message"]["content"]
    assert len([c for c in drained.chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) >= 3
    assert drained.frames[-1] == DONE
    assert (
        drained.usage_chunks[0]["usage"]["total_tokens"] == chat.usage.total_tokens if chat.usage else False
    )
    assert stream.usage == chat.usage
    assert stream.delivered_chars == len(drained.text)


async def test_tool_choice_required_returns_a_tool_call(offline: UpstreamClient) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    result = await get_adapter("mock").chat(offline, MOCK, CHAT | {"tools": tools, "tool_choice": "required"})
    choice = json_of(result.body)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "lookup", "arguments": "{}"}


@pytest.mark.parametrize(
    ("model", "status", "retryable"),
    [("mock-error-429", 429, True), ("mock-error-503", 503, True), ("mock-error-400", 400, False)],
)
async def test_scripted_errors(offline: UpstreamClient, model: str, status: int, retryable: bool) -> None:
    adapter = get_adapter("mock")
    for call in (adapter.chat, adapter.stream_chat, adapter.completions, adapter.embeddings):
        with pytest.raises(UpstreamError) as caught:
            await call(offline, Target("mock", model), CHAT | {"input": "x"})
        assert (caught.value.status, caught.value.retryable) == (status, retryable)


async def test_slow_model_delays(offline: UpstreamClient) -> None:
    started = time.monotonic()
    await get_adapter("mock").chat(offline, Target("mock", "mock-slow-150"), CHAT)
    assert time.monotonic() - started >= 0.14


async def test_completions(offline: UpstreamClient) -> None:
    result = await get_adapter("mock").completions(offline, MOCK, {"prompt": "Once upon a time"})
    answer = json_of(result.body)
    assert answer["object"] == "text_completion"
    assert answer["choices"][0]["text"] == "Mock response to: Once upon a time"
    assert result.usage == Usage(4, estimate_tokens("Mock response to: Once upon a time"))


async def test_embeddings_are_deterministic_unit_vectors(offline: UpstreamClient) -> None:
    adapter = get_adapter("mock")
    first = json_of((await adapter.embeddings(offline, MOCK, {"input": ["a", "b"]})).body)
    again = json_of((await adapter.embeddings(offline, MOCK, {"input": "a"})).body)
    vectors = [d["embedding"] for d in first["data"]]
    assert [len(v) for v in vectors] == [8, 8]
    assert vectors[0] == again["data"][0]["embedding"]
    assert vectors[0] != vectors[1]
    assert sum(x * x for x in vectors[0]) == pytest.approx(1.0)

    sized = await adapter.embeddings(
        offline, MOCK, {"input": "a", "dimensions": 64, "encoding_format": "base64"}
    )
    raw = base64.b64decode(json_of(sized.body)["data"][0]["embedding"])
    assert len(struct.unpack("<64f", raw)) == 64
    assert sized.usage == Usage(1, 0)
