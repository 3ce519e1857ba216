"""Registry, token estimates, SSE parsing and upstream error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from portal.proxy.providers import PROVIDERS, get_adapter
from portal.proxy.providers.client import UpstreamResponse
from portal.proxy.providers.sse import iter_sse
from portal.proxy.providers.transport import error_from_response
from portal.proxy.tokens import estimate_prompt_tokens, estimate_tokens


def test_registry() -> None:
    assert set(PROVIDERS) == {"openai", "azure", "vllm", "ollama", "anthropic", "gemini", "bedrock", "mock"}
    for name in PROVIDERS:
        assert get_adapter(name).name == name
    with pytest.raises(KeyError, match="nope"):
        get_adapter("nope")


def test_token_estimates() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("a") == 1
    assert estimate_tokens("abcdefgh") == 2
    chat = {
        "messages": [
            {"role": "user", "content": "abcdefgh"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "abcd"}, {"type": "image_url", "image_url": {}}],
            },
        ]
    }
    assert estimate_prompt_tokens(chat) == (4 + 2) + (4 + 1 + 85) + 3
    assert estimate_prompt_tokens({"prompt": ["abcd", "abcdefgh"]}) == 3
    assert estimate_prompt_tokens({"input": [1, 2, 3]}) == 3
    assert estimate_prompt_tokens({"input": [[1, 2], [3]]}) == 3


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_sse_parser_handles_splits_crlf_comments_and_multiline() -> None:
    stream = _chunks(
        b": keep-alive\n\nevent: message_start\r",
        b'\ndata: {"a":1}\r\n\r\ndata: li',
        b"ne1\ndata: line2\n\ndata: [DONE]",
    )
    events = [event async for event in iter_sse(stream)]
    assert events == [(b"message_start", b'{"a":1}'), (b"", b"line1\nline2"), (b"", b"[DONE]")]


def _json(value: Any) -> bytes:
    return msgspec.json.encode(value)


def test_error_mapping_of_odd_bodies() -> None:
    plain = error_from_response(UpstreamResponse(502, {}, b"Bad Gateway from nginx"))
    assert (plain.status, plain.message, plain.retryable, plain.error_type) == (
        502,
        "Bad Gateway from nginx",
        True,
        "upstream_error",
    )
    ollama = error_from_response(UpstreamResponse(404, {}, _json({"error": "model 'x' not found"})))
    assert (ollama.message, ollama.error_type, ollama.retryable) == (
        "model 'x' not found",
        "not_found_error",
        False,
    )
    dated = error_from_response(
        UpstreamResponse(503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, _json({"message": "down"}))
    )
    assert dated.retry_after == 0.0
    millis = error_from_response(UpstreamResponse(429, {"retry-after-ms": "1500"}, b"{}"))
    assert millis.retry_after == 1.5
