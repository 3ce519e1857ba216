"""Anthropic adapter: request translation, and chat/stream/tools/errors against the fake Messages API."""

from __future__ import annotations

from typing import Any

import pytest

from portal.proxy.providers import get_adapter
from portal.proxy.providers.anthropic import to_messages_request
from portal.proxy.providers.base import UpstreamClient, UpstreamError, Usage
from tests.fakes import Behaviour, FakeUpstream

from .helpers import DONE, drain, json_of, read_into

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TOOL_HISTORY: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "toolu_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            },
            {
                "id": "toolu_2",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
    {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "24C"}]},
]
CHAT: dict[str, Any] = {"model": "alias", "messages": [{"role": "user", "content": "Say hello"}]}


def test_request_translation() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "Rule one."},
            {"role": "developer", "content": [{"type": "text", "text": "Rule two."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            },
        ],
        "max_completion_tokens": 100,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": "END",
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "user": "user-7",
    }
    request = to_messages_request(body, "claude-x", stream=False)
    assert request["system"] == "Rule one.\n\nRule two."
    assert request["max_tokens"] == 100
    assert request["stop_sequences"] == ["END"]
    assert (request["temperature"], request["top_p"]) == (0.2, 0.9)
    assert request["metadata"] == {"user_id": "user-7"}
    assert request["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert request["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }
    ]
    assert request["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ],
        }
    ]
    assert "stream" not in request


def test_tool_history_translation_merges_results() -> None:
    request = to_messages_request({"messages": TOOL_HISTORY}, "claude-x", stream=True)
    assert request["max_tokens"] == 4096
    assert request["stream"] is True
    assistant, results = request["messages"][1], request["messages"][2]
    assert assistant["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
    ]
    assert results == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "24C"},
        ],
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice_mapping(choice: Any, expected: dict[str, Any]) -> None:
    request = to_messages_request(CHAT | {"tools": [WEATHER_TOOL], "tool_choice": choice}, "m", stream=False)
    assert request["tool_choice"] == expected


def test_bad_tool_arguments_are_a_400() -> None:
    history = [
        {"role": "assistant", "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": "{oops"}}]}
    ]
    with pytest.raises(UpstreamError) as caught:
        to_messages_request({"messages": history}, "m", stream=False)
    assert caught.value.status == 400


async def test_chat_translates_answer_and_usage(
    fake_anthropic: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    fake_anthropic.script(Behaviour(prompt_tokens=30, cached_tokens=10, completion_tokens=5))
    result = await get_adapter("anthropic").chat(
        upstream_http, fake_anthropic.target(), CHAT | {"max_tokens": 50}
    )

    sent = fake_anthropic.last
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == fake_anthropic.api_key
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.json["model"] == "claude-sonnet-4-5"
    assert sent.json["max_tokens"] == 50
    answer = json_of(result.body)
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Hello from the fake upstream.",
    }
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"]["prompt_tokens"] == 30
    assert answer["usage"]["prompt_tokens_details"] == {"cached_tokens": 10}
    assert result.usage == Usage(30, 5)


async def test_chat_tool_calls_round_trip(
    fake_anthropic: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    fake_anthropic.script(Behaviour(tool_calls=[("get_weather", {"city": "Paris"})]))
    adapter = get_adapter("anthropic")
    result = await adapter.chat(upstream_http, fake_anthropic.target(), CHAT | {"tools": [WEATHER_TOOL]})

    choice = json_of(result.body)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": "toolu_fake_0",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        }
    ]
    assert fake_anthropic.last.json["tools"][0]["input_schema"]["required"] == ["city"]

    follow_up = await adapter.chat(
        upstream_http, fake_anthropic.target(), {"messages": TOOL_HISTORY, "tools": [WEATHER_TOOL]}
    )
    assert json_of(follow_up.body)["choices"][0]["message"]["content"] == "Hello from the fake upstream."
    assert fake_anthropic.last.json["system"] == "Be brief."


async def test_stream_text_usage_and_done(
    fake_anthropic: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    fake_anthropic.script(
        Behaviour(text="Bonjour tout le monde", chunks=4, prompt_tokens=9, completion_tokens=6)
    )
    body = CHAT | {"stream": True, "stream_options": {"include_usage": True}}
    stream = await get_adapter("anthropic").stream_chat(upstream_http, fake_anthropic.target(), body)
    drained = await drain(stream)

    assert fake_anthropic.last.json["stream"] is True
    assert drained.chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in drained.chunks)
    assert drained.text == "Bonjour tout le monde"
    assert drained.finish_reasons == ["stop"]
    assert drained.usage_chunks[0]["usage"] == {
        "prompt_tokens": 9,
        "completion_tokens": 6,
        "total_tokens": 15,
    }
    assert drained.frames[-1] == DONE
    assert stream.usage == Usage(9, 6)
    assert stream.delivered_chars == len("Bonjour tout le monde")


async def test_stream_without_include_usage_has_no_usage_chunk(
    fake_anthropic: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    stream = await get_adapter("anthropic").stream_chat(
        upstream_http, fake_anthropic.target(), CHAT | {"stream": True}
    )
    drained = await drain(stream)
    assert drained.usage_chunks == []
    assert stream.usage == Usage(11, 7)


async def test_stream_tool_calls(fake_anthropic: FakeUpstream, upstream_http: UpstreamClient) -> None:
    fake_anthropic.script(
        Behaviour(
            tool_calls=[("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})], chunks=3
        )
    )
    body = CHAT | {"stream": True, "tools": [WEATHER_TOOL]}
    stream = await get_adapter("anthropic").stream_chat(upstream_http, fake_anthropic.target(), body)
    drained = await drain(stream)

    calls = drained.tool_calls()
    assert [calls[i]["id"] for i in (0, 1)] == ["toolu_fake_0", "toolu_fake_1"]
    assert [json_of(calls[i]["arguments"].encode()) for i in (0, 1)] == [{"city": "Paris"}, {"city": "Rome"}]
    assert drained.finish_reasons == ["tool_calls"]
    assert stream.delivered_chars == sum(len(c["arguments"]) for c in calls.values())


async def test_mid_stream_error_event_raises(
    fake_anthropic: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    fake_anthropic.script(Behaviour(text="abcdef", stream_error="Overloaded"))
    stream = await get_adapter("anthropic").stream_chat(
        upstream_http, fake_anthropic.target(), CHAT | {"stream": True}
    )
    received: list[bytes] = []
    with pytest.raises(UpstreamError) as caught:
        await read_into(stream, received)
    await stream.aclose()
    assert (caught.value.status, caught.value.error_type, caught.value.retryable) == (
        529,
        "overloaded_error",
        True,
    )
    assert stream.delivered_chars == 2
    assert len(received) == 2


@pytest.mark.parametrize(
    ("status", "error_type", "retryable"),
    [(400, "invalid_request_error", False), (429, "rate_limit_error", True), (529, "overloaded_error", True)],
)
async def test_errors(
    fake_anthropic: FakeUpstream,
    upstream_http: UpstreamClient,
    status: int,
    error_type: str,
    retryable: bool,
) -> None:
    fake_anthropic.fail(status, "nope", retry_after=3 if status == 429 else None)
    with pytest.raises(UpstreamError) as caught:
        await get_adapter("anthropic").chat(upstream_http, fake_anthropic.target(), CHAT)
    assert (caught.value.status, caught.value.error_type, caught.value.retryable) == (
        status,
        error_type,
        retryable,
    )
    assert caught.value.message == "nope"
    assert caught.value.retry_after == (3.0 if status == 429 else None)


async def test_wrong_key(fake_anthropic: FakeUpstream, upstream_http: UpstreamClient) -> None:
    with pytest.raises(UpstreamError) as caught:
        await get_adapter("anthropic").stream_chat(
            upstream_http, fake_anthropic.target(api_key="sk-ant-wrong"), CHAT | {"stream": True}
        )
    assert (caught.value.status, caught.value.error_type) == (401, "authentication_error")
    assert "sk-ant-wrong" not in caught.value.message


async def test_fake_rejects_what_anthropic_rejects(
    fake_anthropic: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    orphan = {"messages": [{"role": "tool", "tool_call_id": "toolu_x", "content": "1"}]}
    with pytest.raises(UpstreamError) as caught:
        await get_adapter("anthropic").chat(upstream_http, fake_anthropic.target(), orphan)
    assert caught.value.status == 400
    assert "tool_result" in caught.value.message


async def test_embeddings_and_completions_unsupported(
    upstream_http: UpstreamClient, fake_anthropic: FakeUpstream
) -> None:
    adapter = get_adapter("anthropic")
    for call in (adapter.embeddings, adapter.completions):
        with pytest.raises(UpstreamError) as caught:
            await call(upstream_http, fake_anthropic.target(), {"input": "x", "prompt": "x"})
        assert (caught.value.status, caught.value.error_type) == (400, "invalid_request_error")
        assert caught.value.message.endswith("not supported by provider anthropic")
    assert fake_anthropic.requests == []
