"""Reading OpenAI-shaped requests for the translating adapters: text, images, tools, limits, inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from portal.proxy.providers.base import UpstreamError

__all__ = [
    "Function",
    "bad_request",
    "content_parts",
    "content_text",
    "embedding_texts",
    "function_tools",
    "image_url",
    "max_output_tokens",
    "parse_arguments",
    "parse_data_url",
    "stop_sequences",
    "tool_choice",
    "unsupported",
]


@dataclass(slots=True, frozen=True)
class Function:
    name: str
    description: str | None
    parameters: dict[str, Any]


def bad_request(message: str) -> UpstreamError:
    return UpstreamError(400, message, error_type="invalid_request_error")


def unsupported(provider: str, what: str) -> UpstreamError:
    return bad_request(f"{what} is not supported by provider {provider}")


def content_parts(content: Any) -> list[dict[str, Any]]:
    """Message content as a list of OpenAI content parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list):
        return [part for part in content if isinstance(part, dict)]
    raise bad_request("message content must be a string or a list of content parts")


def content_text(content: Any) -> str:
    """The concatenated text of message content (non-text parts are ignored)."""
    if isinstance(content, str):
        return content
    return "".join(str(part.get("text", "")) for part in content_parts(content) if part.get("type") == "text")


def image_url(part: dict[str, Any]) -> str:
    value = part.get("image_url")
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise bad_request("image_url content part has no url")
    return url


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``(media_type, base64_data)`` for a base64 ``data:`` URL, else ``None``."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        raise bad_request("only base64 data URLs are supported for images")
    return header[: -len(";base64")] or "application/octet-stream", data


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """Tool-call arguments (a JSON string in OpenAI's format) as an object."""
    if isinstance(arguments, dict):
        return arguments
    if arguments is None or arguments == "":
        return {}
    try:
        value = msgspec.json.decode(arguments) if isinstance(arguments, (str, bytes)) else None
    except msgspec.DecodeError:
        value = None
    if not isinstance(value, dict):
        raise bad_request("tool call arguments must be a JSON object")
    return value


def max_output_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens")
    if value is None:
        value = body.get("max_tokens")
    return value if isinstance(value, int) else None


def stop_sequences(body: dict[str, Any]) -> list[str] | None:
    stop = body.get("stop")
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and stop:
        return [s for s in stop if isinstance(s, str)]
    return None


def function_tools(body: dict[str, Any]) -> list[Function]:
    """The request's function tools; other tool types are refused."""
    tools = body.get("tools")
    if not tools:
        return []
    if not isinstance(tools, list):
        raise bad_request("tools must be a list")
    out: list[Function] = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise bad_request("only function tools are supported")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise bad_request("function tool has no name")
        parameters = function.get("parameters")
        out.append(
            Function(
                name=function["name"],
                description=function.get("description"),
                parameters=parameters
                if isinstance(parameters, dict)
                else {"type": "object", "properties": {}},
            )
        )
    return out


def tool_choice(body: dict[str, Any]) -> tuple[str, str | None] | None:
    """``("auto" | "none" | "required", None)`` or ``("function", name)``; ``None`` when unset."""
    choice = body.get("tool_choice")
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        return choice, None
    if isinstance(choice, dict):
        function = choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return "function", function["name"]
    raise bad_request("unsupported tool_choice")


def embedding_texts(body: dict[str, Any], provider: str) -> list[str]:
    """The embeddings ``input`` as a list of strings (token arrays are refused)."""
    value = body.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return value
    if isinstance(value, list) and value:
        raise unsupported(provider, "token-array input")
    raise bad_request("input must be a string or a non-empty list of strings")
