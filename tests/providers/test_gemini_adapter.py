"""Gemini adapter: request translation, generateContent, alt=sse streaming, tools, embeddings, errors."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest

from portal.proxy.providers import get_adapter
from portal.proxy.providers.base import UpstreamClient, UpstreamError, Usage
from portal.proxy.providers.gemini import to_gemini_request
from tests.fakes import Behaviour, FakeUpstream
from tests.fakes.gemini_fake import fake_signature

from .helpers import DONE, drain, json_of, read_into

TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "additionalProperties": False,
        },
    },
}
CHAT: dict[str, Any] = {"model": "alias", "messages": [{"role": "user", "content": "Say hello"}]}


def test_request_translation() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                ],
            },
            {"role": "assistant", "content": "A cat."},
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "call_1", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 3}'},
            {"role": "tool", "tool_call_id": "call_1", "content": "cold"},
        ],
        "max_tokens": 64,
        "temperature": 0.5,
        "top_p": 0.8,
        "stop": ["END"],
        "seed": 3,
        "n": 2,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object"}},
        },
        "tools": [TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }
    request = to_gemini_request(body)
    assert request["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert request["contents"] == [
        {
            "role": "user",
            "parts": [{"text": "Describe"}, {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}}],
        },
        {"role": "model", "parts": [{"text": "A cat."}]},
        {"role": "user", "parts": [{"text": "Weather?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}]},
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp": 3}}},
                {"functionResponse": {"name": "get_weather", "response": {"result": "cold"}}},
            ],
        },
    ]
    assert request["generationConfig"] == {
        "maxOutputTokens": 64,
        "temperature": 0.5,
        "topP": 0.8,
        "candidateCount": 2,
        "seed": 3,
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object"},
    }
    declaration = request["tools"][0]["functionDeclarations"][0]
    assert declaration["parametersJsonSchema"] == TOOL["function"]["parameters"]
    assert request["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }


def test_unknown_tool_call_id_is_a_400() -> None:
    with pytest.raises(UpstreamError) as caught:
        to_gemini_request({"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]})
    assert caught.value.status == 400


async def test_chat(fake_gemini: FakeUpstream, upstream_http: UpstreamClient) -> None:
    fake_gemini.script(Behaviour(prompt_tokens=12, completion_tokens=4, truncated=True))
    result = await get_adapter("gemini").chat(upstream_http, fake_gemini.target(), CHAT | {"max_tokens": 4})

    sent = fake_gemini.last
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == fake_gemini.api_key
    assert "key" not in sent.query
    assert sent.json["generationConfig"] == {"maxOutputTokens": 4}
    answer = json_of(result.body)
    assert answer["id"] == "chatcmpl-fakeResponseId"
    assert answer["choices"][0]["message"]["content"] == "Hello from the fake upstream."
    assert answer["choices"][0]["finish_reason"] == "length"
    assert result.usage == Usage(12, 4)


async def test_stream_crlf_sse(fake_gemini: FakeUpstream, upstream_http: UpstreamClient) -> None:
    fake_gemini.script(Behaviour(text="alpha beta gamma", chunks=3, prompt_tokens=5, completion_tokens=3))
    body = CHAT | {"stream": True, "stream_options": {"include_usage": True}}
    stream = await get_adapter("gemini").stream_chat(upstream_http, fake_gemini.target(), body)
    drained = await drain(stream)

    assert fake_gemini.last.path.endswith(":streamGenerateContent")
    assert fake_gemini.last.query == {"alt": "sse"}
    assert drained.text == "alpha beta gamma"
    assert drained.finish_reasons == ["stop"]
    assert drained.usage_chunks[0]["usage"]["total_tokens"] == 8
    assert drained.frames[-1] == DONE
    assert stream.usage == Usage(5, 3)


async def test_tool_call_signature_round_trip_for_gemini_3(
    fake_gemini: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    target = fake_gemini.target("gemini-3-pro-preview")
    adapter = get_adapter("gemini")
    fake_gemini.script(Behaviour(tool_calls=[("get_weather", {"city": "Oslo"})]))
    result = await adapter.chat(upstream_http, target, CHAT | {"tools": [TOOL]})

    choice = json_of(result.body)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Oslo"}'}
    assert all(c.isalnum() or c in "_-" for c in call["id"])

    history: list[dict[str, Any]] = [
        *CHAT["messages"],
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "3C"},
    ]
    follow_up = await adapter.chat(upstream_http, target, {"messages": history, "tools": [TOOL]})
    assert json_of(follow_up.body)["choices"][0]["message"]["content"] == "Hello from the fake upstream."
    part = fake_gemini.last.json["contents"][1]["parts"][0]
    assert part["thoughtSignature"] == fake_signature("get_weather")


async def test_stream_tool_calls(fake_gemini: FakeUpstream, upstream_http: UpstreamClient) -> None:
    fake_gemini.script(
        Behaviour(tool_calls=[("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Bergen"})])
    )
    stream = await get_adapter("gemini").stream_chat(
        upstream_http, fake_gemini.target(), CHAT | {"stream": True, "tools": [TOOL]}
    )
    drained = await drain(stream)
    calls = drained.tool_calls()
    assert [json_of(calls[i]["arguments"].encode())["city"] for i in (0, 1)] == ["Oslo", "Bergen"]
    assert drained.finish_reasons == ["tool_calls"]
    assert stream.delivered_chars == sum(len(c["arguments"]) for c in calls.values())


async def test_mid_stream_error_raises(fake_gemini: FakeUpstream, upstream_http: UpstreamClient) -> None:
    fake_gemini.script(Behaviour(text="abcdef", stream_error="backend unavailable"))
    stream = await get_adapter("gemini").stream_chat(
        upstream_http, fake_gemini.target(), CHAT | {"stream": True}
    )
    received: list[bytes] = []
    with pytest.raises(UpstreamError) as caught:
        await read_into(stream, received)
    await stream.aclose()
    assert (caught.value.status, caught.value.retryable, caught.value.message) == (
        503,
        True,
        "backend unavailable",
    )
    assert stream.delivered_chars == 2
    assert len(received) == 2


async def test_invalid_key_maps_to_401(fake_gemini: FakeUpstream, upstream_http: UpstreamClient) -> None:
    with pytest.raises(UpstreamError) as caught:
        await get_adapter("gemini").chat(upstream_http, fake_gemini.target(api_key="AIza-wrong"), CHAT)
    assert (caught.value.status, caught.value.error_type, caught.value.retryable) == (
        401,
        "authentication_error",
        False,
    )
    assert caught.value.message == "API key not valid. Please pass a valid API key."


async def test_quota_error_is_retryable_with_retry_delay(
    fake_gemini: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    fake_gemini.fail(429, "Resource has been exhausted", retry_after=7)
    with pytest.raises(UpstreamError) as caught:
        await get_adapter("gemini").chat(upstream_http, fake_gemini.target(), CHAT)
    assert (caught.value.status, caught.value.retryable, caught.value.retry_after) == (429, True, 7.0)
    assert caught.value.error_type == "rate_limit_error"


async def test_embeddings(fake_gemini: FakeUpstream, upstream_http: UpstreamClient) -> None:
    target = fake_gemini.target("text-embedding-004")
    body = {"model": "x", "input": ["hello world", "bye"], "dimensions": 4}
    result = await get_adapter("gemini").embeddings(upstream_http, target, body)

    sent = fake_gemini.last
    assert sent.path == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert sent.json["requests"][0] == {
        "model": "models/text-embedding-004",
        "content": {"parts": [{"text": "hello world"}]},
        "outputDimensionality": 4,
    }
    answer = json_of(result.body)
    assert [d["index"] for d in answer["data"]] == [0, 1]
    assert [len(d["embedding"]) for d in answer["data"]] == [4, 4]
    assert result.usage == Usage(4, 0, estimated=True)

    encoded = await get_adapter("gemini").embeddings(
        upstream_http, target, body | {"encoding_format": "base64"}
    )
    raw = base64.b64decode(json_of(encoded.body)["data"][0]["embedding"])
    assert list(struct.unpack("<4f", raw)) == pytest.approx(answer["data"][0]["embedding"])


async def test_completions_unsupported(fake_gemini: FakeUpstream, upstream_http: UpstreamClient) -> None:
    with pytest.raises(UpstreamError) as caught:
        await get_adapter("gemini").completions(upstream_http, fake_gemini.target(), {"prompt": "x"})
    assert caught.value.status == 400
    assert fake_gemini.requests == []
