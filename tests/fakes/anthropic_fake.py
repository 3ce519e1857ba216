"""Fake Anthropic Messages API: ``POST /v1/messages`` with validation, real errors and SSE event sequence."""

from __future__ import annotations

from typing import Any

import msgspec

from portal.proxy.providers.base import Target
from tests.fakes.server import Behaviour, Recorded, Reply, json_reply, split_text

__all__ = ["AnthropicWire"]

_ERRORS = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}
_BLOCK_TYPES = {"text", "image", "document", "tool_use", "tool_result", "thinking"}


def _error(status: int, message: str | None = None, error_type: str | None = None) -> dict[str, Any]:
    default_type, default_message = _ERRORS.get(status, ("api_error", "Internal server error"))
    return {
        "type": "error",
        "error": {"type": error_type or default_type, "message": message or default_message},
        "request_id": "req_fake",
    }


def _invalid(message: str) -> Reply:
    return json_reply(400, _error(400, message))


def _validate(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    if not isinstance(body.get("model"), str):
        return "model: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    tool_use_ids: set[str] = set()
    for index, message in enumerate(messages):
        if message.get("role") not in ("user", "assistant"):
            return f"messages.{index}.role: Input should be 'user' or 'assistant'"
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list) or not blocks:
            return f"messages.{index}: content must be non-empty"
        for block in blocks:
            kind = block.get("type")
            if kind not in _BLOCK_TYPES:
                return f"messages.{index}.content: unknown block type {kind!r}"
            if kind == "text" and not block.get("text"):
                return f"messages.{index}: text content blocks must be non-empty"
            if kind == "tool_use":
                if not isinstance(block.get("input"), dict):
                    return f"messages.{index}: tool_use.input must be an object"
                tool_use_ids.add(block.get("id"))
            if kind == "tool_result" and block.get("tool_use_id") not in tool_use_ids:
                return f"messages.{index}: tool_result block(s) provided without a matching tool_use"
    for tool in body.get("tools") or ():
        if not isinstance(tool.get("input_schema"), dict) or not tool.get("name"):
            return "tools: each tool needs a name and an input_schema"
    return None


def _stop_reason(behaviour: Behaviour) -> str:
    if behaviour.truncated:
        return "max_tokens"
    return "tool_use" if behaviour.tool_calls else "end_turn"


def _usage(behaviour: Behaviour, output_tokens: int | None = None) -> dict[str, int]:
    return {
        "input_tokens": behaviour.prompt_tokens - behaviour.cached_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": behaviour.cached_tokens,
        "output_tokens": behaviour.completion_tokens if output_tokens is None else output_tokens,
    }


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + msgspec.json.encode(data) + b"\n\n"


class AnthropicWire:
    name = "anthropic"
    api_key = "sk-ant-fake-key"

    def target(self, base_url: str, model: str | None) -> Target:
        return Target("anthropic", model or "claude-sonnet-4-5", api_base=base_url, api_key=self.api_key)

    def check_auth(self, request: Recorded) -> Reply | None:
        if request.headers.get("x-api-key") != self.api_key:
            return json_reply(401, _error(401))
        if "anthropic-version" not in request.headers:
            return _invalid("anthropic-version: header is required")
        return None

    def error(self, request: Recorded, behaviour: Behaviour) -> Reply:
        headers = [("retry-after", str(behaviour.retry_after))] if behaviour.retry_after is not None else []
        return json_reply(
            behaviour.status, _error(behaviour.status, behaviour.message, behaviour.error_type), headers
        )

    def handle(self, request: Recorded, behaviour: Behaviour) -> Reply:
        if request.path != "/v1/messages":
            return json_reply(404, _error(404))
        problem = _validate(request.json)
        if problem:
            return _invalid(problem)
        body: dict[str, Any] = request.json
        if body.get("stream"):
            return self._stream(body, behaviour)
        content: list[dict[str, Any]] = []
        if behaviour.text and not behaviour.tool_calls:
            content.append({"type": "text", "text": behaviour.text})
        for i, (name, args) in enumerate(behaviour.tool_calls):
            content.append({"type": "tool_use", "id": f"toolu_fake_{i}", "name": name, "input": args})
        answer: dict[str, Any] = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": _stop_reason(behaviour),
            "stop_sequence": None,
        }
        if not behaviour.omit_usage:
            answer["usage"] = _usage(behaviour)
        return json_reply(200, answer)

    def _stream(self, body: dict[str, Any], behaviour: Behaviour) -> Reply:
        message: dict[str, Any] = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
        }
        if not behaviour.omit_usage:
            message["usage"] = _usage(behaviour, output_tokens=1)
        frames = [_event("message_start", {"type": "message_start", "message": message})]
        index = 0
        if behaviour.text and not behaviour.tool_calls:
            start = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
            frames += [_event("content_block_start", start), _event("ping", {"type": "ping"})]
            for position, piece in enumerate(split_text(behaviour.text, behaviour.chunks)):
                delta = {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                }
                frames.append(_event("content_block_delta", delta))
                if position == 0 and behaviour.stream_error:
                    error = _error(529, behaviour.stream_error, behaviour.error_type)
                    frames.append(_event("error", error))
                    return Reply(200, frames, content_type="text/event-stream; charset=utf-8")
            frames.append(_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
            index = 1
        for i, (name, args) in enumerate(behaviour.tool_calls):
            block = {"type": "tool_use", "id": f"toolu_fake_{i}", "name": name, "input": {}}
            frames.append(
                _event(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": block},
                )
            )
            pieces = ["", *split_text(msgspec.json.encode(args).decode(), behaviour.chunks)]
            for piece in pieces:
                delta = {"type": "input_json_delta", "partial_json": piece}
                frames.append(
                    _event(
                        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
                    )
                )
            frames.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
            index += 1
        message_delta: dict[str, Any] = {
            "type": "message_delta",
            "delta": {"stop_reason": _stop_reason(behaviour), "stop_sequence": None},
        }
        if not behaviour.omit_usage:
            message_delta["usage"] = {"output_tokens": behaviour.completion_tokens}
        frames.append(_event("message_delta", message_delta))
        frames.append(_event("message_stop", {"type": "message_stop"}))
        return Reply(200, frames, content_type="text/event-stream; charset=utf-8")
