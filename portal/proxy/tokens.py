"""Cheap token estimates (about four characters per token) for when an upstream reports no usage."""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["estimate_prompt_tokens", "estimate_tokens"]

_MESSAGE_OVERHEAD = 4
_REPLY_PRIMING = 3
_IMAGE_TOKENS = 85


def estimate_tokens(text: str) -> int:
    """About ``len(text) / 4``, and at least 1 for any non-empty text."""
    return (len(text) + 3) // 4


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return estimate_tokens(content)
    if not isinstance(content, list):
        return 0
    total = 0
    for part in content:
        if isinstance(part, dict):
            text = part.get("text")
            if isinstance(text, str):
                total += estimate_tokens(text)
            elif part.get("type") in ("image_url", "image", "input_image"):
                total += _IMAGE_TOKENS
    return total


def _input_tokens(value: Any) -> int:
    if isinstance(value, str):
        return estimate_tokens(value)
    if not isinstance(value, list) or not value:
        return 0
    first = value[0]
    if isinstance(first, int):
        return len(value)
    total = 0
    for item in value:
        if isinstance(item, str):
            total += estimate_tokens(item)
        elif isinstance(item, list):
            total += len(item)
    return total


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """Estimate the prompt size of an OpenAI-shaped request (chat ``messages``, ``prompt`` or ``input``)."""
    total = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if not isinstance(message, dict):
                continue
            total += _MESSAGE_OVERHEAD + _content_tokens(message.get("content"))
            tool_calls = message.get("tool_calls")
            if isinstance(tool_calls, list):
                for call in tool_calls:
                    function = call.get("function") if isinstance(call, dict) else None
                    if isinstance(function, dict):
                        total += estimate_tokens(str(function.get("name", "")))
                        total += estimate_tokens(str(function.get("arguments", "")))
        total += _REPLY_PRIMING
        tools = body.get("tools")
        if tools:
            total += len(msgspec.json.encode(tools)) // 4
    total += _input_tokens(body.get("prompt"))
    total += _input_tokens(body.get("input"))
    return total
