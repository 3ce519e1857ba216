"""OpenAI-compatible adapter (OpenAI, Azure, vLLM, Ollama) against the fake OpenAI server over HTTP."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from portal.proxy.providers import get_adapter
from portal.proxy.providers.base import UpstreamClient, UpstreamError, Usage
from tests.fakes import Behaviour, FakeUpstream

from .helpers import DONE, drain, json_of

CHAT: dict[str, Any] = {"model": "client-alias", "messages": [{"role": "user", "content": "Say hello"}]}


async def test_chat_passes_body_through_and_reads_usage(
    fake_openai: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    body = CHAT | {
        "seed": 42,
        "response_format": {"type": "json_object"},
        "x_vendor_extension": {"a": 1},
        "base_url": "http://evil.invalid/v1",
        "api_base": "http://evil.invalid",
    }
    target = fake_openai.target("gpt-4o-mini")

    result = await get_adapter("openai").chat(upstream_http, target, body)

    sent = fake_openai.last
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {fake_openai.api_key}"
    assert sent.json["model"] == "gpt-4o-mini"
    assert sent.json["seed"] == 42
    assert sent.json["response_format"] == {"type": "json_object"}
    assert sent.json["x_vendor_extension"] == {"a": 1}
    assert "stream_options" not in sent.json
    assert len(fake_openai.requests) == 1
    answer = json_of(result.body)
    assert answer["choices"][0]["message"]["content"] == "Hello from the fake upstream."
    assert answer["system_fingerprint"] == "fp_fake"
    assert answer["choices"][0]["message"]["annotations"] == []
    assert result.usage == Usage(11, 7)
    assert body["model"] == "client-alias"


async def test_chat_without_usage_reports_none(
    fake_openai: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    fake_openai.script(Behaviour(omit_usage=True))
    result = await get_adapter("vllm").chat(upstream_http, fake_openai.target(provider="vllm"), CHAT)
    assert result.usage is None
    assert json_of(result.body)["choices"][0]["finish_reason"] == "stop"


async def test_stream_injects_include_usage_and_strips_usage_chunk(
    fake_openai: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    fake_openai.script(Behaviour(text="one two three four", chunks=4, prompt_tokens=20, completion_tokens=5))

    stream = await get_adapter("openai").stream_chat(
        upstream_http, fake_openai.target(), CHAT | {"stream": True}
    )
    drained = await drain(stream)

    assert fake_openai.last.json["stream"] is True
    assert fake_openai.last.json["stream_options"] == {"include_usage": True}
    assert drained.text == "one two three four"
    assert drained.usage_chunks == []
    assert drained.frames[-1] == DONE
    assert drained.finish_reasons == ["stop"]
    assert stream.usage == Usage(20, 5)
    assert stream.delivered_chars == len("one two three four")


async def test_stream_keeps_usage_chunk_when_client_asked(
    fake_openai: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    body = CHAT | {"stream": True, "stream_options": {"include_usage": True, "include_obfuscation": False}}
    stream = await get_adapter("openai").stream_chat(upstream_http, fake_openai.target(), body)
    drained = await drain(stream)

    assert fake_openai.last.json["stream_options"] == {"include_usage": True, "include_obfuscation": False}
    assert [c["usage"]["total_tokens"] for c in drained.usage_chunks] == [18]
    assert drained.frames[-1] == DONE
    assert stream.usage == Usage(11, 7)


async def test_stream_without_upstream_usage_leaves_usage_unset(
    fake_openai: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    fake_openai.script(Behaviour(omit_usage=True, text="abcdef"))
    stream = await get_adapter("openai").stream_chat(
        upstream_http, fake_openai.target(), CHAT | {"stream": True}
    )
    drained = await drain(stream)
    assert stream.usage is None
    assert stream.delivered_chars == 6
    assert drained.frames[-1] == DONE


async def test_tool_calls_pass_through(fake_openai: FakeUpstream, upstream_http: UpstreamClient) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    fake_openai.script(Behaviour(tool_calls=[("get_weather", {"city": "Paris"})]))

    result = await get_adapter("openai").chat(upstream_http, fake_openai.target(), CHAT | {"tools": tools})

    assert fake_openai.last.json["tools"] == tools
    message = json_of(result.body)["choices"][0]["message"]
    assert message["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}


async def test_streamed_tool_call_arguments_count_as_delivered(
    fake_openai: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    fake_openai.script(Behaviour(tool_calls=[("lookup", {"q": "portal gateway"})], chunks=3))
    stream = await get_adapter("openai").stream_chat(
        upstream_http, fake_openai.target(), CHAT | {"stream": True}
    )
    drained = await drain(stream)

    calls = drained.tool_calls()
    assert calls[0]["name"] == "lookup"
    assert json_of(calls[0]["arguments"].encode()) == {"q": "portal gateway"}
    assert stream.delivered_chars == len(calls[0]["arguments"])
    assert drained.finish_reasons == ["tool_calls"]


@pytest.mark.parametrize(
    ("status", "retryable", "error_type"),
    [
        (400, False, "invalid_request_error"),
        (404, False, "invalid_request_error"),
        (500, True, "server_error"),
    ],
)
async def test_upstream_errors_keep_status_and_message(
    fake_openai: FakeUpstream, upstream_http: UpstreamClient, status: int, retryable: bool, error_type: str
) -> None:
    fake_openai.fail(status, "upstream says no")
    with pytest.raises(UpstreamError) as caught:
        await get_adapter("openai").chat(upstream_http, fake_openai.target(), CHAT)
    assert caught.value.status == status
    assert caught.value.message == "upstream says no"
    assert caught.value.retryable is retryable
    assert caught.value.error_type == error_type


async def test_rate_limit_is_retryable_with_retry_after(
    fake_openai: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    fake_openai.fail(429, retry_after=2)
    with pytest.raises(UpstreamError) as caught:
        await get_adapter("openai").chat(upstream_http, fake_openai.target(), CHAT)
    assert (caught.value.status, caught.value.retryable, caught.value.retry_after) == (429, True, 2.0)
    assert caught.value.message == "Rate limit reached for requests."


async def test_stream_error_before_first_byte_raises(
    fake_openai: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    fake_openai.fail(503)
    with pytest.raises(UpstreamError) as caught:
        await get_adapter("openai").stream_chat(upstream_http, fake_openai.target(), CHAT | {"stream": True})
    assert caught.value.status == 503
    assert caught.value.retryable


async def test_wrong_key_is_authentication_error_without_echoing_key(
    fake_openai: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    target = fake_openai.target(api_key="sk-wrong-secret")
    with pytest.raises(UpstreamError) as caught:
        await get_adapter("openai").chat(upstream_http, target, CHAT)
    assert caught.value.status == 401
    assert not caught.value.retryable
    assert "sk-wrong-secret" not in caught.value.message
    assert caught.value.message.startswith("Incorrect API key")


async def test_azure_url_and_api_key_header(fake_openai: FakeUpstream, upstream_http: UpstreamClient) -> None:
    target = fake_openai.target(
        "prod-gpt4o", provider="azure", api_base=fake_openai.base_url + "/", api_version="2024-10-21"
    )
    result = await get_adapter("azure").chat(upstream_http, target, CHAT)

    sent = fake_openai.last
    assert sent.path == "/openai/deployments/prod-gpt4o/chat/completions"
    assert sent.query == {"api-version": "2024-10-21"}
    assert sent.headers["api-key"] == fake_openai.api_key
    assert "authorization" not in sent.headers
    assert result.usage == Usage(11, 7)


async def test_azure_v1_api_and_extra_headers(
    fake_openai: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    target = fake_openai.target(
        "gpt-4.1",
        provider="azure",
        api_base=fake_openai.base_url + "/openai/v1",
        extra_headers=(("x-ms-client-request-id", "req-1"),),
    )
    await get_adapter("azure").chat(upstream_http, target, CHAT)
    sent = fake_openai.last
    assert sent.path == "/openai/v1/chat/completions"
    assert sent.query == {}
    assert sent.headers["api-key"] == fake_openai.api_key
    assert sent.headers["x-ms-client-request-id"] == "req-1"
    assert sent.json["model"] == "gpt-4.1"


async def test_azure_wrong_key_gets_azure_error(
    fake_openai: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    target = fake_openai.target("dep", provider="azure", api_base=fake_openai.base_url, api_key="bad")
    with pytest.raises(UpstreamError) as caught:
        await get_adapter("azure").chat(upstream_http, target, CHAT)
    assert caught.value.status == 401
    assert caught.value.message.startswith("Access denied")


async def test_ollama_base_without_v1_gets_it(
    fake_openai: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    target = fake_openai.target("llama3.2", provider="ollama", api_base=fake_openai.base_url)
    await get_adapter("ollama").chat(upstream_http, target, CHAT)
    assert fake_openai.last.path == "/v1/chat/completions"
    assert fake_openai.last.json["model"] == "llama3.2"


async def test_completions_and_embeddings(fake_openai: FakeUpstream, upstream_http: UpstreamClient) -> None:
    adapter = get_adapter("openai")
    completion = await adapter.completions(
        upstream_http,
        fake_openai.target("gpt-3.5-turbo-instruct"),
        {"model": "x", "prompt": "Once", "stream": True},
    )
    assert fake_openai.last.path == "/v1/completions"
    assert fake_openai.last.json["stream"] is False
    assert json_of(completion.body)["choices"][0]["text"] == "Hello from the fake upstream."
    assert completion.usage == Usage(11, 7)

    fake_openai.script(Behaviour(prompt_tokens=4))
    body = {"model": "x", "input": ["a", "b"], "dimensions": 4}
    embedded = await adapter.embeddings(upstream_http, fake_openai.target("text-embedding-3-small"), body)
    assert fake_openai.last.path == "/v1/embeddings"
    assert fake_openai.last.json["dimensions"] == 4
    data = json_of(embedded.body)["data"]
    assert [len(d["embedding"]) for d in data] == [4, 4]
    assert embedded.usage == Usage(4, 0)


async def test_timeout_is_retryable_504(fake_openai: FakeUpstream, upstream_http: UpstreamClient) -> None:
    fake_openai.script(Behaviour(delay=1.0))
    with pytest.raises(UpstreamError) as caught:
        await get_adapter("openai").chat(upstream_http, fake_openai.target(timeout_s=0.2), CHAT)
    assert (caught.value.status, caught.value.retryable, caught.value.error_type) == (504, True, "timeout")


async def test_connection_refused_is_retryable_502(
    upstream_http: UpstreamClient, fake_openai: FakeUpstream
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    target = fake_openai.target(api_base=f"http://127.0.0.1:{port}/v1")
    with pytest.raises(UpstreamError) as caught:
        await get_adapter("openai").chat(upstream_http, target, CHAT)
    assert (caught.value.status, caught.value.retryable) == (502, True)


async def test_invalid_json_answer_is_502(fake_openai: FakeUpstream, upstream_http: UpstreamClient) -> None:
    fake_openai.script(Behaviour(raw=b"<html>gateway</html>"))
    with pytest.raises(UpstreamError) as caught:
        await get_adapter("openai").chat(upstream_http, fake_openai.target(), CHAT)
    assert caught.value.status == 502


async def test_mid_stream_error_frame_is_passed_through(
    fake_openai: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    fake_openai.script(Behaviour(text="abcdef", chunks=3, stream_error="model crashed"))
    stream = await get_adapter("openai").stream_chat(
        upstream_http, fake_openai.target(), CHAT | {"stream": True}
    )
    drained = await drain(stream)
    assert drained.chunks[-1]["error"]["message"] == "model crashed"
    assert drained.frames[-1] == DONE
    assert stream.delivered_chars == 2


async def test_early_close_releases_stream(fake_openai: FakeUpstream, upstream_http: UpstreamClient) -> None:
    fake_openai.script(Behaviour(text="x" * 50, chunks=10, chunk_delay=0.05))
    stream = await get_adapter("openai").stream_chat(
        upstream_http, fake_openai.target(), CHAT | {"stream": True}
    )
    frames = []
    async for frame in stream.events:
        frames.append(frame)
        if len(frames) == 3:
            break
    await stream.aclose()
    await stream.aclose()
    assert stream.delivered_chars == 10
    follow_up = await get_adapter("openai").chat(upstream_http, fake_openai.target(), CHAT)
    assert follow_up.usage == Usage(11, 7)
