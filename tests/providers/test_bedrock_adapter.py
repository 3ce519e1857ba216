"""Bedrock adapter: SigV4 signing verified by the fake, Converse translation, binary event streaming."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer  # type: ignore[import-untyped]

from portal.proxy.providers import get_adapter
from portal.proxy.providers.base import UpstreamClient, UpstreamError, Usage
from portal.proxy.providers.bedrock import sign_headers, to_converse_request
from tests.fakes import Behaviour, FakeUpstream
from tests.fakes.bedrock_fake import ACCESS_KEY, SECRET_KEY, BedrockWire, model_id
from tests.fakes.eventstream import encode_event, encode_exception

from .helpers import DONE, drain, json_of, read_into

TOOL: dict[str, Any] = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}},
}
CHAT: dict[str, Any] = {
    "model": "alias",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
}
PROFILE_ARN = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/tenant42abc"


def test_event_stream_encoding_decodes_with_botocore() -> None:
    data = encode_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hé"}})
    data += encode_exception("throttlingException", "slow down")
    buffer = EventStreamBuffer()
    buffer.add_data(data[:10])
    assert list(buffer) == []
    buffer.add_data(data[10:])
    event, exception = list(buffer)
    assert event.headers == {
        ":event-type": "contentBlockDelta",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    assert json_of(event.payload)["delta"] == {"text": "hé"}
    assert exception.headers[":message-type"] == "exception"
    assert json_of(exception.payload) == {"message": "slow down"}

    corrupted = bytearray(encode_event("messageStop", {"stopReason": "end_turn"}))
    corrupted[-6] ^= 0xFF
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(corrupted))
    with pytest.raises(ChecksumMismatch):
        list(buffer)


def test_request_translation() -> None:
    body = {
        "messages": [
            *CHAT["messages"],
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}],
            },
            {
                "role": "assistant",
                "tool_calls": [{"id": "t1", "function": {"name": "get_weather", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
        ],
        "max_tokens": 10,
        "temperature": 0.1,
        "top_p": 0.5,
        "stop": "###",
        "tools": [TOOL],
        "tool_choice": "required",
    }
    request = to_converse_request(body)
    assert request["system"] == [{"text": "Be brief."}]
    assert request["messages"] == [
        {
            "role": "user",
            "content": [{"text": "Hi"}, {"image": {"format": "png", "source": {"bytes": "AAAA"}}}],
        },
        {
            "role": "assistant",
            "content": [{"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {}}}],
        },
        {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "sunny"}]}}]},
    ]
    assert request["inferenceConfig"] == {
        "maxTokens": 10,
        "temperature": 0.1,
        "topP": 0.5,
        "stopSequences": ["###"],
    }
    assert request["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "inputSchema": {"json": {"type": "object"}},
                    "description": "Weather",
                }
            }
        ],
        "toolChoice": {"any": {}},
    }


def test_http_image_urls_are_refused() -> None:
    body = {
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}
        ]
    }
    with pytest.raises(UpstreamError) as caught:
        to_converse_request(body)
    assert caught.value.status == 400


async def test_signed_chat(fake_bedrock: FakeUpstream, upstream_http: UpstreamClient) -> None:
    fake_bedrock.script(Behaviour(prompt_tokens=40, cached_tokens=15, completion_tokens=9))
    result = await get_adapter("bedrock").chat(upstream_http, fake_bedrock.target(), CHAT)

    sent = fake_bedrock.last
    assert sent.path == "/model/anthropic.claude-3-5-haiku-20241022-v1:0/converse"
    assert sent.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert "/us-east-1/bedrock/aws4_request" in sent.headers["authorization"]
    assert SECRET_KEY not in str(sent.headers)
    answer = json_of(result.body)
    assert answer["id"].startswith("chatcmpl-")
    assert answer["model"] == "anthropic.claude-3-5-haiku-20241022-v1:0"
    assert answer["choices"][0]["message"]["content"] == "Hello from the fake upstream."
    assert answer["usage"]["prompt_tokens_details"] == {"cached_tokens": 15}
    assert result.usage == Usage(40, 9)


async def test_inference_profile_arn_is_encoded_and_signed(
    fake_bedrock: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    target = fake_bedrock.target(PROFILE_ARN, region=None)
    result = await get_adapter("bedrock").chat(upstream_http, target, CHAT)

    sent = fake_bedrock.last
    assert sent.raw_path == f"/model/{quote(PROFILE_ARN, safe='')}/converse"
    assert model_id(sent) == PROFILE_ARN
    assert result.usage == Usage(11, 7)


async def test_session_credentials(fake_bedrock: FakeUpstream, upstream_http: UpstreamClient) -> None:
    target = fake_bedrock.target(api_key=BedrockWire.session_api_key)
    await get_adapter("bedrock").chat(upstream_http, target, CHAT)
    assert fake_bedrock.last.headers["x-amz-security-token"] == BedrockWire.session_api_key.split(":", 2)[2]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"api_key": f"{ACCESS_KEY}:wrong-secret"}, "The request signature we calculated does not match"),
        (
            {"api_key": "AKIAUNKNOWN000000000:whatever"},
            "The security token included in the request is invalid.",
        ),
        ({"region": "eu-west-1"}, "Credential should be scoped to a valid region"),
    ],
)
async def test_bad_signatures_are_rejected(
    fake_bedrock: FakeUpstream, upstream_http: UpstreamClient, overrides: dict[str, str], expected: str
) -> None:
    with pytest.raises(UpstreamError) as caught:
        await get_adapter("bedrock").chat(upstream_http, fake_bedrock.target(**overrides), CHAT)
    assert caught.value.status == 403
    assert caught.value.message.startswith(expected)
    assert not caught.value.retryable


async def test_tampered_body_fails_signature(
    fake_bedrock: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    target = fake_bedrock.target()
    url = f"{fake_bedrock.base_url}/model/{quote(target.upstream_model, safe='')}/converse"
    headers = sign_headers(target, url, b'{"messages":[]}', "application/json")
    tampered = b'{"messages":[{"role":"user","content":[{"text":"x"}]}]}'
    with pytest.raises(UpstreamError) as caught:
        await upstream_http.post(target, url, headers, tampered)
    assert caught.value.status == 403
    assert caught.value.error_type == "permission_error"
    assert caught.value.message.startswith("The request signature we calculated does not match")

    signed = sign_headers(target, url, tampered, "application/json")
    assert (await upstream_http.post(target, url, signed, tampered)).status == 200


async def test_missing_credentials_are_a_config_error(
    upstream_http: UpstreamClient, fake_bedrock: FakeUpstream
) -> None:
    with pytest.raises(UpstreamError) as caught:
        await get_adapter("bedrock").chat(upstream_http, fake_bedrock.target(api_key="only-an-id"), CHAT)
    assert caught.value.status == 500
    assert fake_bedrock.requests == []


async def test_tool_calls(fake_bedrock: FakeUpstream, upstream_http: UpstreamClient) -> None:
    fake_bedrock.script(Behaviour(tool_calls=[("get_weather", {"city": "Lima"})]))
    result = await get_adapter("bedrock").chat(upstream_http, fake_bedrock.target(), CHAT | {"tools": [TOOL]})
    choice = json_of(result.body)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"] == [
        {
            "id": "tooluse_fake_0",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Lima"}'},
        }
    ]


async def test_stream(fake_bedrock: FakeUpstream, upstream_http: UpstreamClient) -> None:
    fake_bedrock.script(
        Behaviour(text="streaming from bedrock", chunks=5, prompt_tokens=8, completion_tokens=4)
    )
    body = CHAT | {"stream": True, "stream_options": {"include_usage": True}}
    stream = await get_adapter("bedrock").stream_chat(upstream_http, fake_bedrock.target(), body)
    drained = await drain(stream)

    assert fake_bedrock.last.path.endswith("/converse-stream")
    assert fake_bedrock.last.headers["accept"] == "application/vnd.amazon.eventstream"
    assert drained.text == "streaming from bedrock"
    assert drained.finish_reasons == ["stop"]
    assert drained.usage_chunks[0]["usage"] == {
        "prompt_tokens": 8,
        "completion_tokens": 4,
        "total_tokens": 12,
    }
    assert drained.frames[-1] == DONE
    assert stream.usage == Usage(8, 4)


async def test_stream_tool_calls(fake_bedrock: FakeUpstream, upstream_http: UpstreamClient) -> None:
    fake_bedrock.script(Behaviour(tool_calls=[("get_weather", {"city": "Quito", "unit": "C"})], chunks=4))
    stream = await get_adapter("bedrock").stream_chat(
        upstream_http, fake_bedrock.target(), CHAT | {"stream": True, "tools": [TOOL]}
    )
    drained = await drain(stream)
    calls = drained.tool_calls()
    assert calls[0]["id"] == "tooluse_fake_0"
    assert json_of(calls[0]["arguments"].encode()) == {"city": "Quito", "unit": "C"}
    assert drained.finish_reasons == ["tool_calls"]
    assert drained.usage_chunks == []
    assert stream.usage == Usage(11, 7)


async def test_stream_exception_event_raises(
    fake_bedrock: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    fake_bedrock.script(Behaviour(text="abcdef", stream_error="Too many tokens, please wait."))
    stream = await get_adapter("bedrock").stream_chat(
        upstream_http, fake_bedrock.target(), CHAT | {"stream": True}
    )
    received: list[bytes] = []
    with pytest.raises(UpstreamError) as caught:
        await read_into(stream, received)
    await stream.aclose()
    assert (caught.value.status, caught.value.retryable) == (429, True)
    assert caught.value.message == "Too many tokens, please wait."
    assert stream.delivered_chars == 2
    assert len(received) == 2


@pytest.mark.parametrize(("status", "retryable"), [(400, False), (429, True), (503, True)])
async def test_errors(
    fake_bedrock: FakeUpstream, upstream_http: UpstreamClient, status: int, retryable: bool
) -> None:
    fake_bedrock.fail(status)
    with pytest.raises(UpstreamError) as caught:
        await get_adapter("bedrock").chat(upstream_http, fake_bedrock.target(), CHAT)
    assert (caught.value.status, caught.value.retryable) == (status, retryable)
    assert caught.value.message


async def test_tool_history_without_tools_is_refused_like_aws(
    fake_bedrock: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    history = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t", "content": "y"},
    ]
    with pytest.raises(UpstreamError) as caught:
        await get_adapter("bedrock").chat(upstream_http, fake_bedrock.target(), {"messages": history})
    assert caught.value.status == 400
    assert "toolConfig" in caught.value.message
