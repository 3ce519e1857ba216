"""Anthropic Messages API: OpenAI chat requests translated to ``/v1/messages`` and answers translated back."""

from __future__ import annotations

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
from portal.proxy.providers.client import UpstreamStreamResponse
from portal.proxy.providers.inputs import (
    bad_request,
    content_parts,
    content_text,
    function_tools,
    image_url,
    max_output_tokens,
    parse_arguments,
    parse_data_url,
    stop_sequences,
    tool_choice,
    unsupported,
)
from portal.proxy.providers.shapes import ChunkEncoder, assistant_choice, chat_completion, new_id, tool_call
from portal.proxy.providers.sse import DONE, iter_sse, new_stream

__all__ = ["ANTHROPIC_VERSION", "AnthropicAdapter", "to_messages_request"]

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_API_BASE = "https://api.anthropic.com"
DEFAULT_MAX_TOKENS = 4096

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_STREAM_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def _user_block(part: dict[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    if kind == "text":
        return {"type": "text", "text": str(part.get("text", ""))}
    if kind == "image_url":
        url = image_url(part)
        data_url = parse_data_url(url)
        if data_url is None:
            return {"type": "image", "source": {"type": "url", "url": url}}
        media_type, data = data_url
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    raise bad_request(f"content part type {kind!r} is not supported by provider anthropic")


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    role = message.get("role")
    if role == "tool":
        return [
            {
                "type": "tool_result",
                "tool_use_id": str(message.get("tool_call_id", "")),
                "content": content_text(message.get("content")),
            }
        ]
    blocks = [_user_block(part) for part in content_parts(message.get("content"))]
    blocks = [b for b in blocks if b["type"] != "text" or b["text"]]
    if role == "assistant":
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            blocks.append(
                {
                    "type": "tool_use",
                    "id": call.get("id"),
                    "name": function.get("name"),
                    "input": parse_arguments(function.get("arguments")),
                }
            )
    return blocks


def _tool_choice(body: dict[str, Any]) -> dict[str, Any] | None:
    choice = tool_choice(body)
    out: dict[str, Any] | None
    if choice is None:
        out = None
    elif choice[0] == "function":
        out = {"type": "tool", "name": choice[1]}
    else:
        out = {"type": {"auto": "auto", "none": "none", "required": "any"}[choice[0]]}
    if body.get("parallel_tool_calls") is False and (out is None or out["type"] != "none"):
        out = {**(out or {"type": "auto"}), "disable_parallel_tool_use": True}
    return out


def to_messages_request(body: dict[str, Any], model: str, stream: bool) -> dict[str, Any]:
    """Translate an OpenAI chat body into an Anthropic Messages request."""
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for message in body.get("messages") or ():
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(content_text(message.get("content")))
            continue
        if role not in ("user", "assistant", "tool"):
            raise bad_request(f"message role {role!r} is not supported by provider anthropic")
        wire_role = "assistant" if role == "assistant" else "user"
        blocks = _blocks(message)
        if not blocks:
            continue
        if messages and messages[-1]["role"] == wire_role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": wire_role, "content": blocks})
    request: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": max_output_tokens(body) or DEFAULT_MAX_TOKENS,
    }
    if system:
        request["system"] = "\n\n".join(system)
    for source, dest in (("temperature", "temperature"), ("top_p", "top_p"), ("top_k", "top_k")):
        if body.get(source) is not None:
            request[dest] = body[source]
    stops = stop_sequences(body)
    if stops:
        request["stop_sequences"] = stops
    tools = function_tools(body)
    if tools:
        request["tools"] = [
            {"name": f.name, "input_schema": f.parameters}
            | ({"description": f.description} if f.description else {})
            for f in tools
        ]
    choice = _tool_choice(body)
    if choice is not None and tools:
        request["tool_choice"] = choice
    if isinstance(body.get("user"), str):
        request["metadata"] = {"user_id": body["user"]}
    if stream:
        request["stream"] = True
    return request


class _Usage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class _Block(msgspec.Struct):
    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None


class _Message(msgspec.Struct):
    id: str = ""
    model: str = ""
    content: list[_Block] = []
    stop_reason: str | None = None
    usage: _Usage | None = None


class _Delta(msgspec.Struct):
    type: str | None = None
    text: str | None = None
    partial_json: str | None = None
    stop_reason: str | None = None


class _Error(msgspec.Struct):
    type: str = "api_error"
    message: str = "upstream stream error"


class _Event(msgspec.Struct):
    type: str
    message: _Message | None = None
    index: int = 0
    content_block: _Block | None = None
    delta: _Delta | None = None
    usage: _Usage | None = None
    error: _Error | None = None


_decode_message = msgspec.json.Decoder(_Message).decode
_decode_event = msgspec.json.Decoder(_Event).decode
_encode = msgspec.json.encode


def _prompt_tokens(usage: _Usage) -> int:
    return (
        (usage.input_tokens or 0)
        + (usage.cache_creation_input_tokens or 0)
        + (usage.cache_read_input_tokens or 0)
    )


def to_chat_completion(content: bytes) -> ChatResult:
    """Translate a Messages API answer into an OpenAI ``chat.completion``."""
    try:
        message = _decode_message(content)
    except msgspec.DecodeError:
        raise UpstreamError(502, "upstream returned invalid JSON", retryable=True) from None
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message.content:
        if block.type == "text" and block.text:
            texts.append(block.text)
        elif block.type == "tool_use":
            arguments = _encode(block.input if block.input is not None else {}).decode()
            calls.append(tool_call(block.id or new_id("toolu_"), block.name or "", arguments))
    usage = None
    cached = None
    if message.usage is not None:
        usage = Usage(_prompt_tokens(message.usage), message.usage.output_tokens or 0)
        cached = message.usage.cache_read_input_tokens
    finish = FINISH_REASONS.get(message.stop_reason or "", "stop")
    choice = assistant_choice(0, "".join(texts) if texts else None, calls, finish)
    return ChatResult(chat_completion(message.id or new_id(), message.model, [choice], usage, cached), usage)


def _stream_error(error: _Error) -> UpstreamError:
    status = _STREAM_ERROR_STATUS.get(error.type, 502)
    return UpstreamError(
        status, error.message, error_type=error.type, retryable=status >= 500 or status == 429
    )


async def _relay(
    response: UpstreamStreamResponse, stream: ProviderStream, client_wants_usage: bool
) -> AsyncIterator[bytes]:
    encoder: ChunkEncoder | None = None
    tool_indexes: dict[int, int] = {}
    cached: int | None = None
    try:
        async for _name, data in iter_sse(response.iter_chunks()):
            event = _decode_event(data)
            kind = event.type
            if kind == "content_block_delta" and event.delta is not None and encoder is not None:
                delta = event.delta
                if delta.text:
                    stream.delivered_chars += len(delta.text)
                    yield encoder.text(delta.text)
                elif delta.partial_json and event.index in tool_indexes:
                    stream.delivered_chars += len(delta.partial_json)
                    call = {"index": tool_indexes[event.index], "function": {"arguments": delta.partial_json}}
                    yield encoder.delta({"tool_calls": [call]})
            elif kind == "message_start" and event.message is not None:
                message = event.message
                encoder = ChunkEncoder(message.id or new_id(), message.model)
                if message.usage is not None:
                    stream.usage = Usage(_prompt_tokens(message.usage), message.usage.output_tokens or 0)
                    cached = message.usage.cache_read_input_tokens
                yield encoder.delta({"role": "assistant", "content": ""})
            elif kind == "content_block_start" and event.content_block is not None and encoder is not None:
                block = event.content_block
                if block.type == "tool_use":
                    index = tool_indexes[event.index] = len(tool_indexes)
                    call = {"index": index} | tool_call(block.id or new_id("toolu_"), block.name or "", "")
                    yield encoder.delta({"tool_calls": [call]})
                elif block.type == "text" and block.text:
                    stream.delivered_chars += len(block.text)
                    yield encoder.text(block.text)
            elif kind == "message_delta" and encoder is not None:
                if event.usage is not None:
                    usage = stream.usage or Usage()
                    if event.usage.input_tokens is not None:
                        usage.prompt_tokens = _prompt_tokens(event.usage)
                    if event.usage.output_tokens is not None:
                        usage.completion_tokens = event.usage.output_tokens
                    stream.usage = usage
                if event.delta is not None and event.delta.stop_reason:
                    yield encoder.delta({}, FINISH_REASONS.get(event.delta.stop_reason, "stop"))
            elif kind == "message_stop":
                break
            elif kind == "error":
                raise _stream_error(event.error or _Error())
    except msgspec.DecodeError:
        raise UpstreamError(502, "upstream sent an invalid stream event", retryable=True) from None
    finally:
        await response.aclose()
    if client_wants_usage and encoder is not None and stream.usage is not None:
        yield encoder.usage(stream.usage, cached)
    yield DONE


class AnthropicAdapter:
    name = "anthropic"

    def _endpoint(self, target: Target) -> tuple[str, dict[str, str]]:
        base = (target.api_base or DEFAULT_API_BASE).rstrip("/")
        headers = {"Content-Type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
        if target.api_key:
            headers["x-api-key"] = target.api_key
        for name, value in target.extra_headers:
            headers[name] = value
        return f"{base}/v1/messages", headers

    async def chat(self, client: UpstreamClient, target: Target, body: dict[str, Any]) -> ChatResult:
        request = to_messages_request(body, target.upstream_model, stream=False)
        url, headers = self._endpoint(target)
        response = await client.post(target, url, headers, _encode(request))
        return to_chat_completion(response.content)

    async def stream_chat(
        self, client: UpstreamClient, target: Target, body: dict[str, Any]
    ) -> ProviderStream:
        request = to_messages_request(body, target.upstream_model, stream=True)
        options = body.get("stream_options")
        client_wants_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        url, headers = self._endpoint(target)
        response = await client.open_stream(target, url, headers, _encode(request))
        return new_stream(lambda stream: _relay(response, stream, client_wants_usage), response.aclose)

    async def completions(self, client: UpstreamClient, target: Target, body: dict[str, Any]) -> ChatResult:
        raise unsupported(self.name, "/v1/completions")

    async def embeddings(self, client: UpstreamClient, target: Target, body: dict[str, Any]) -> ChatResult:
        raise unsupported(self.name, "/v1/embeddings")
