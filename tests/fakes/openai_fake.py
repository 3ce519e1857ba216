"""Fake OpenAI-compatible upstream: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``,
and the Azure ``/openai/deployments/{deployment}/...?api-version=`` layout with ``api-key`` auth."""

from __future__ import annotations

import base64
import hashlib
import struct
import time
from typing import Any

import msgspec

from portal.proxy.providers.base import Target
from tests.fakes.server import Behaviour, Recorded, Reply, json_reply, split_text

__all__ = ["OpenAIWire"]

_ERRORS = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def _error(status: int, message: str | None = None, error_type: str | None = None) -> dict[str, Any]:
    default_type, code, default_message = _ERRORS.get(status, ("server_error", None, "Upstream error."))
    return {
        "error": {
            "message": message or default_message,
            "type": error_type or default_type,
            "param": None,
            "code": code,
        }
    }


def _usage(behaviour: Behaviour) -> dict[str, Any]:
    return {
        "prompt_tokens": behaviour.prompt_tokens,
        "completion_tokens": behaviour.completion_tokens,
        "total_tokens": behaviour.prompt_tokens + behaviour.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": behaviour.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _finish(behaviour: Behaviour) -> str:
    if behaviour.truncated:
        return "length"
    return "tool_calls" if behaviour.tool_calls else "stop"


def _vector(text: str, dimensions: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest() * (dimensions // 8 + 1)
    return [b / 255.0 for b in digest[:dimensions]]


class OpenAIWire:
    name = "openai"
    api_key = "sk-fake-openai-key"

    def target(self, base_url: str, model: str | None) -> Target:
        return Target("openai", model or "gpt-4o-mini", api_base=f"{base_url}/v1", api_key=self.api_key)

    def check_auth(self, request: Recorded) -> Reply | None:
        if request.path.startswith("/openai/"):
            if "api-version" not in request.query and not request.path.startswith("/openai/v1/"):
                return json_reply(404, {"error": {"code": "404", "message": "Resource not found"}})
            if request.headers.get("api-key") != self.api_key:
                message = (
                    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
                    "provide a valid key for an active subscription and use a correct regional API "
                    "endpoint for your resource."
                )
                return json_reply(401, {"error": {"code": "401", "message": message}})
            return None
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return json_reply(401, _error(401))
        return None

    def error(self, request: Recorded, behaviour: Behaviour) -> Reply:
        headers = [("retry-after", str(behaviour.retry_after))] if behaviour.retry_after is not None else []
        return json_reply(
            behaviour.status, _error(behaviour.status, behaviour.message, behaviour.error_type), headers
        )

    def handle(self, request: Recorded, behaviour: Behaviour) -> Reply:
        body = request.json
        if request.method != "POST" or not isinstance(body, dict):
            return json_reply(400, _error(400, "We could not parse the JSON body of your request."))
        if request.path.endswith("/chat/completions"):
            return self._chat(body, behaviour)
        if request.path.endswith("/completions"):
            return self._completion(body, behaviour)
        if request.path.endswith("/embeddings"):
            return self._embeddings(body, behaviour)
        return json_reply(404, _error(404, f"Invalid URL (POST {request.path})"))

    def _chat(self, body: dict[str, Any], behaviour: Behaviour) -> Reply:
        if not isinstance(body.get("model"), str) or not body.get("messages"):
            return json_reply(400, _error(400, "Missing required parameter: 'messages'."))
        stream = bool(body.get("stream"))
        if body.get("stream_options") is not None and not stream:
            problem = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
            return json_reply(400, _error(400, problem))
        if stream:
            return self._chat_stream(body, behaviour)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": behaviour.text,
            "refusal": None,
            "annotations": [],
        }
        if behaviour.tool_calls:
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": f"call_fake_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": msgspec.json.encode(args).decode()},
                }
                for i, (name, args) in enumerate(behaviour.tool_calls)
            ]
        answer: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(behaviour)}
            ],
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
        if not behaviour.omit_usage:
            answer["usage"] = _usage(behaviour)
        return json_reply(200, answer)

    def _chat_stream(self, body: dict[str, Any], behaviour: Behaviour) -> Reply:
        options = body.get("stream_options") or {}
        include_usage = bool(options.get("include_usage")) and not behaviour.omit_usage
        base: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            value = base | {
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
            }
            if include_usage:
                value["usage"] = None
            return b"data: " + msgspec.json.encode(value) + b"\n\n"

        frames = [chunk({"role": "assistant", "content": "", "refusal": None})]
        if behaviour.tool_calls:
            for i, (name, args) in enumerate(behaviour.tool_calls):
                start = {"index": i, "id": f"call_fake_{i}", "type": "function"}
                frames.append(chunk({"tool_calls": [start | {"function": {"name": name, "arguments": ""}}]}))
                for piece in split_text(msgspec.json.encode(args).decode(), behaviour.chunks):
                    frames.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
        else:
            for position, piece in enumerate(split_text(behaviour.text, behaviour.chunks)):
                frames.append(chunk({"content": piece}))
                if position == 0 and behaviour.stream_error:
                    error = _error(500, behaviour.stream_error)
                    frames.append(b"data: " + msgspec.json.encode(error) + b"\n\n")
                    return Reply(200, frames, content_type="text/event-stream; charset=utf-8")
        frames.append(chunk({}, _finish(behaviour)))
        if include_usage:
            frames.append(
                b"data: " + msgspec.json.encode(base | {"choices": [], "usage": _usage(behaviour)}) + b"\n\n"
            )
        frames.append(b"data: [DONE]\n\n")
        return Reply(200, frames, content_type="text/event-stream; charset=utf-8")

    def _completion(self, body: dict[str, Any], behaviour: Behaviour) -> Reply:
        if body.get("prompt") is None:
            return json_reply(400, _error(400, "Missing required parameter: 'prompt'."))
        answer: dict[str, Any] = {
            "id": "cmpl-fake",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {"text": behaviour.text, "index": 0, "logprobs": None, "finish_reason": _finish(behaviour)}
            ],
        }
        if not behaviour.omit_usage:
            answer["usage"] = _usage(behaviour)
        return json_reply(200, answer)

    def _embeddings(self, body: dict[str, Any], behaviour: Behaviour) -> Reply:
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(texts, list) or not texts:
            return json_reply(400, _error(400, "'input' is a required property"))
        dimensions = body.get("dimensions") or 8
        data = []
        for index, text in enumerate(texts):
            vector = _vector(str(text), dimensions)
            embedding: Any = vector
            if body.get("encoding_format") == "base64":
                embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        answer: dict[str, Any] = {"object": "list", "data": data, "model": body.get("model")}
        if not behaviour.omit_usage:
            answer["usage"] = {
                "prompt_tokens": behaviour.prompt_tokens,
                "total_tokens": behaviour.prompt_tokens,
            }
        return json_reply(200, answer)
