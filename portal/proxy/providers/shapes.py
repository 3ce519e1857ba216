"""OpenAI-shaped output built by the translating adapters: completions, stream chunks, embeddings."""

from __future__ import annotations

import base64
import os
import struct
import time
from typing import Any

import msgspec

from portal.proxy.providers.base import Usage

__all__ = [
    "ChunkEncoder",
    "assistant_choice",
    "chat_completion",
    "embeddings_list",
    "new_id",
    "tool_call",
    "usage_json",
]

_encode = msgspec.json.encode


def new_id(prefix: str = "chatcmpl-") -> str:
    return prefix + os.urandom(12).hex()


def usage_json(usage: Usage, cached_tokens: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if cached_tokens:
        out["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return out


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def assistant_choice(
    index: int, text: str | None, tool_calls: list[dict[str, Any]], finish_reason: str | None
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"index": index, "message": message, "logprobs": None, "finish_reason": finish_reason}


def chat_completion(
    completion_id: str,
    model: str,
    choices: list[dict[str, Any]],
    usage: Usage | None,
    cached_tokens: int | None = None,
) -> bytes:
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage_json(usage, cached_tokens)
    return _encode(body)


class ChunkEncoder:
    """Frames ``chat.completion.chunk`` events for one streamed answer from a prebuilt header."""

    __slots__ = ("_head",)

    def __init__(self, completion_id: str, model: str) -> None:
        self._head = (
            b'data: {"id":'
            + _encode(completion_id)
            + b',"object":"chat.completion.chunk","created":'
            + str(int(time.time())).encode()
            + b',"model":'
            + _encode(model)
            + b',"choices":'
        )

    def delta(self, delta: dict[str, Any], finish_reason: str | None = None, index: int = 0) -> bytes:
        return b"".join(
            (
                self._head,
                b'[{"index":',
                str(index).encode(),
                b',"delta":',
                _encode(delta),
                b',"logprobs":null,"finish_reason":',
                _encode(finish_reason),
                b"}]}\n\n",
            )
        )

    def text(self, text: str, index: int = 0) -> bytes:
        return self.delta({"content": text}, None, index)

    def usage(self, usage: Usage, cached_tokens: int | None = None) -> bytes:
        return self._head + b'[],"usage":' + _encode(usage_json(usage, cached_tokens)) + b"}\n\n"


def _pack(vector: list[float], encoding_format: str | None) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def embeddings_list(
    vectors: list[list[float]], model: str, usage: Usage, encoding_format: str | None
) -> bytes:
    """An OpenAI ``/v1/embeddings`` answer; ``encoding_format="base64"`` packs little-endian float32."""
    return _encode(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": _pack(v, encoding_format)}
                for i, v in enumerate(vectors)
            ],
            "model": model,
            "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens},
        }
    )
