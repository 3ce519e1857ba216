"""The built-in offline provider: deterministic answers, usage and embeddings without any network.

``upstream_model`` switches behaviour for routing tests: ``mock-error-<status>`` fails with that status
(429 and 5xx retryable) and ``mock-slow-<ms>`` answers after a delay.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import struct
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from portal.proxy.providers.base import (
    ChatResult,
    ProviderStream,
    Target,
    UpstreamClient,
    UpstreamError,
    Usage,
)
from portal.proxy.providers.inputs import (
    content_text,
    embedding_texts,
    function_tools,
    max_output_tokens,
    tool_choice,
)
from portal.proxy.providers.shapes import (
    ChunkEncoder,
    assistant_choice,
    chat_completion,
    embeddings_list,
    tool_call,
)
from portal.proxy.providers.sse import DONE, new_stream
from portal.proxy.tokens import estimate_prompt_tokens, estimate_tokens

__all__ = ["MockAdapter", "mock_answer", "mock_vector"]

DEFAULT_DIMENSIONS = 8
_STREAM_PIECES = 4
_PREVIEW_CHARS = 40


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def mock_answer(body: dict[str, Any]) -> str:
    """The deterministic answer to a chat or completions body."""
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        last = prompt
    else:
        users = [m for m in body.get("messages") or () if isinstance(m, dict) and m.get("role") == "user"]
        last = content_text(users[-1].get("content")) if users else ""
    last = " ".join(last.split())
    return f"Mock response to: {last[:_PREVIEW_CHARS]}" if last else "Mock response."


def mock_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector derived from the SHA-256 of ``text``."""
    raw = b""
    counter = 0
    while len(raw) < dimensions * 4:
        raw += hashlib.sha256(counter.to_bytes(4, "big") + text.encode()).digest()
        counter += 1
    values = [v / 2**31 - 1.0 for v in struct.unpack(f">{dimensions}I", raw[: dimensions * 4])]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


async def _behave(target: Target) -> None:
    model = target.upstream_model
    if model.startswith("mock-error-"):
        try:
            status = int(model.removeprefix("mock-error-"))
        except ValueError:
            status = 500
        retryable = status >= 500 or status == 429
        raise UpstreamError(
            status,
            f"mock upstream error {status}",
            error_type="rate_limit_error" if status == 429 else "upstream_error",
            retryable=retryable,
            retry_after=1.0 if status == 429 else None,
        )
    if model.startswith("mock-slow-"):
        try:
            delay_ms = int(model.removeprefix("mock-slow-"))
        except ValueError:
            delay_ms = 1000
        await asyncio.sleep(delay_ms / 1000)


def _reply(body: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]], str]:
    """(text, tool_calls, finish_reason)."""
    tools = function_tools(body)
    choice = tool_choice(body)
    if tools and choice is not None and choice[0] in ("required", "function"):
        name = choice[1] or tools[0].name
        return None, [tool_call("call_mock_" + _digest(name)[:12], name, "{}")], "tool_calls"
    text = mock_answer(body)
    limit = max_output_tokens(body)
    if limit is not None and estimate_tokens(text) > limit:
        return text[: max(limit, 1) * 4], [], "length"
    return text, [], "stop"


def _usage(body: dict[str, Any], text: str | None, calls: list[dict[str, Any]]) -> Usage:
    completion = estimate_tokens(text or "") + sum(estimate_tokens(c["function"]["arguments"]) for c in calls)
    return Usage(estimate_prompt_tokens(body), max(completion, 1))


async def _relay(
    stream: ProviderStream, body: dict[str, Any], model: str, completion_id: str
) -> AsyncIterator[bytes]:
    text, calls, finish = _reply(body)
    usage = _usage(body, text, calls)
    encoder = ChunkEncoder(completion_id, model)
    yield encoder.delta({"role": "assistant", "content": ""})
    if text:
        words = text.split(" ")
        size = max(1, math.ceil(len(words) / _STREAM_PIECES))
        for start in range(0, len(words), size):
            piece = " ".join(words[start : start + size]) + (" " if start + size < len(words) else "")
            stream.delivered_chars += len(piece)
            await asyncio.sleep(0)
            yield encoder.text(piece)
    for index, call in enumerate(calls):
        stream.delivered_chars += len(call["function"]["arguments"])
        yield encoder.delta({"tool_calls": [{"index": index} | call]})
    stream.usage = usage
    yield encoder.delta({}, finish)
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        yield encoder.usage(usage)
    yield DONE


class MockAdapter:
    name = "mock"

    async def chat(self, client: UpstreamClient, target: Target, body: dict[str, Any]) -> ChatResult:
        await _behave(target)
        text, calls, finish = _reply(body)
        usage = _usage(body, text, calls)
        completion_id = "chatcmpl-mock-" + _digest(text or calls[0]["function"]["name"])
        choice = assistant_choice(0, text, calls, finish)
        return ChatResult(chat_completion(completion_id, target.upstream_model, [choice], usage), usage)

    async def stream_chat(
        self, client: UpstreamClient, target: Target, body: dict[str, Any]
    ) -> ProviderStream:
        await _behave(target)
        completion_id = "chatcmpl-mock-" + _digest(mock_answer(body))
        model = target.upstream_model
        return new_stream(lambda stream: _relay(stream, body, model, completion_id))

    async def completions(self, client: UpstreamClient, target: Target, body: dict[str, Any]) -> ChatResult:
        await _behave(target)
        text = mock_answer(body)
        usage = Usage(estimate_prompt_tokens(body), estimate_tokens(text))
        answer = {
            "id": "cmpl-mock-" + _digest(text),
            "object": "text_completion",
            "created": 0,
            "model": target.upstream_model,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            },
        }
        return ChatResult(msgspec.json.encode(answer), usage)

    async def embeddings(self, client: UpstreamClient, target: Target, body: dict[str, Any]) -> ChatResult:
        await _behave(target)
        texts = embedding_texts(body, self.name)
        dimensions = body.get("dimensions")
        size = dimensions if isinstance(dimensions, int) and 0 < dimensions <= 4096 else DEFAULT_DIMENSIONS
        usage = Usage(sum(estimate_tokens(t) for t in texts), 0)
        encoding = body.get("encoding_format")
        vectors = [mock_vector(t, size) for t in texts]
        content = embeddings_list(
            vectors, target.upstream_model, usage, encoding if isinstance(encoding, str) else None
        )
        return ChatResult(content, usage)
