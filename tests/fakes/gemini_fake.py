"""Fake Gemini API: ``/v1beta/models/{model}:generateContent``, ``:streamGenerateContent?alt=sse``
(CRLF-framed SSE like Google's) and ``:batchEmbedContents``, with Google's error shapes."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import msgspec

from portal.proxy.providers.base import Target
from tests.fakes.server import Behaviour, Recorded, Reply, json_reply, split_text

__all__ = ["GeminiWire", "fake_signature"]

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_TOP_LEVEL = {
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
    "safetySettings",
    "cachedContent",
}
_GENERATION_CONFIG = {
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "thinkingConfig",
}
_DATA_FIELDS = {"text", "inlineData", "fileData", "functionCall", "functionResponse"}


def fake_signature(name: str) -> str:
    """The thought signature the fake attaches to a call of ``name`` (has ``+``, ``/`` and ``=``)."""
    return base64.b64encode(b"\xfb\xff\xbf" + hashlib.sha256(name.encode()).digest()[:7]).decode()


def _error(
    status: int, message: str | None = None, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": status,
        "message": message or f"fake upstream error {status}",
        "status": _STATUS_NAMES.get(status, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return {"error": error}


def _invalid(message: str) -> Reply:
    return json_reply(400, _error(400, message))


def _validate(body: Any, model: str) -> str | None:
    if not isinstance(body, dict):
        return "Invalid JSON payload received."
    for key in body:
        if key not in _TOP_LEVEL:
            return f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.'
    for key in body.get("generationConfig") or {}:
        if key not in _GENERATION_CONFIG:
            return f"Invalid JSON payload received. Unknown name \"{key}\" at 'generation_config'."
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    called: set[str] = set()
    for index, content in enumerate(contents):
        if content.get("role") not in ("user", "model"):
            return f"Please use a valid role: user, model. (contents[{index}])"
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            return f"* GenerateContentRequest.contents[{index}].parts: contents.parts must not be empty."
        for part in parts:
            if len(_DATA_FIELDS & set(part)) != 1:
                return f"* GenerateContentRequest.contents[{index}].parts: exactly one data field is required"
            call = part.get("functionCall")
            if call is not None:
                called.add(call.get("name"))
                if model.startswith("gemini-3") and part.get("thoughtSignature") != fake_signature(
                    call.get("name")
                ):
                    return f"Function call is missing a thought_signature. (contents[{index}])"
            response = part.get("functionResponse")
            if response is not None and (
                response.get("name") not in called or not isinstance(response.get("response"), dict)
            ):
                return f"* contents[{index}]: functionResponse does not match a function call"
    for tool in body.get("tools") or ():
        for declaration in tool.get("functionDeclarations") or ():
            if not declaration.get("name") or (
                "parameters" in declaration and "parametersJsonSchema" in declaration
            ):
                return "* GenerateContentRequest.tools: invalid function declaration"
    return None


def _finish(behaviour: Behaviour) -> str:
    return "MAX_TOKENS" if behaviour.truncated else "STOP"


def _usage(behaviour: Behaviour, completion: int | None = None) -> dict[str, int]:
    candidates = behaviour.completion_tokens if completion is None else completion
    usage = {
        "promptTokenCount": behaviour.prompt_tokens,
        "candidatesTokenCount": candidates,
        "totalTokenCount": behaviour.prompt_tokens + candidates,
    }
    if behaviour.cached_tokens:
        usage["cachedContentTokenCount"] = behaviour.cached_tokens
    return usage


def _call_parts(behaviour: Behaviour) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for position, (name, args) in enumerate(behaviour.tool_calls):
        part: dict[str, Any] = {"functionCall": {"name": name, "args": args}}
        if position == 0:
            part["thoughtSignature"] = fake_signature(name)
        parts.append(part)
    return parts


class GeminiWire:
    name = "gemini"
    api_key = "fake-gemini-key"

    def target(self, base_url: str, model: str | None) -> Target:
        return Target("gemini", model or "gemini-2.5-flash", api_base=base_url, api_key=self.api_key)

    def check_auth(self, request: Recorded) -> Reply | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            message = (
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API."
            )
            return json_reply(403, _error(403, message))
        if key != self.api_key:
            details = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            ]
            return json_reply(400, _error(400, "API key not valid. Please pass a valid API key.", details))
        return None

    def error(self, request: Recorded, behaviour: Behaviour) -> Reply:
        details = None
        if behaviour.retry_after is not None:
            details = [
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{behaviour.retry_after:g}s",
                }
            ]
        return json_reply(behaviour.status, _error(behaviour.status, behaviour.message, details))

    def handle(self, request: Recorded, behaviour: Behaviour) -> Reply:
        resource, _, method = request.path.removeprefix("/v1beta/").rpartition(":")
        if not resource.startswith("models/") or request.method != "POST":
            return json_reply(404, _error(404, f"models/{resource} is not found for API version v1beta"))
        model = resource.removeprefix("models/")
        if method == "batchEmbedContents":
            return self._embed(request.json, resource, behaviour)
        if method not in ("generateContent", "streamGenerateContent"):
            return json_reply(404, _error(404, f"Method {method} not found"))
        problem = _validate(request.json, model)
        if problem:
            return _invalid(problem)
        if method == "generateContent":
            return json_reply(200, self._response(model, behaviour))
        frames = self._stream(model, behaviour)
        if request.query.get("alt") == "sse":
            return Reply(
                200, [b"data: " + msgspec.json.encode(f) + b"\r\n\r\n" for f in frames], "text/event-stream"
            )
        return json_reply(200, frames)

    def _response(self, model: str, behaviour: Behaviour) -> dict[str, Any]:
        parts = _call_parts(behaviour) if behaviour.tool_calls else [{"text": behaviour.text}]
        answer: dict[str, Any] = {
            "candidates": [
                {"content": {"parts": parts, "role": "model"}, "finishReason": _finish(behaviour), "index": 0}
            ],
            "modelVersion": model,
            "responseId": "fakeResponseId",
        }
        if not behaviour.omit_usage:
            answer["usageMetadata"] = _usage(behaviour)
        return answer

    def _stream(self, model: str, behaviour: Behaviour) -> list[dict[str, Any]]:
        pieces: list[list[dict[str, Any]]] = (
            [_call_parts(behaviour)]
            if behaviour.tool_calls
            else [[{"text": piece}] for piece in split_text(behaviour.text, behaviour.chunks)]
        )
        frames: list[dict[str, Any]] = []
        for position, parts in enumerate(pieces):
            candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
            last = position == len(pieces) - 1
            if last:
                candidate["finishReason"] = _finish(behaviour)
            frame: dict[str, Any] = {
                "candidates": [candidate],
                "modelVersion": model,
                "responseId": "fakeResponseId",
            }
            if not behaviour.omit_usage:
                frame["usageMetadata"] = _usage(behaviour, None if last else position + 1)
            frames.append(frame)
            if position == 0 and behaviour.stream_error:
                frames.append(_error(503, behaviour.stream_error))
                break
        return frames

    def _embed(self, body: Any, resource: str, behaviour: Behaviour) -> Reply:
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            return _invalid("* BatchEmbedContentsRequest.requests: requests is not specified")
        embeddings = []
        for index, request in enumerate(requests):
            if request.get("model") != resource:
                return _invalid(
                    f"requests[{index}].model: model must match the model in the URL ({resource})"
                )
            text = "".join(p.get("text", "") for p in request.get("content", {}).get("parts", []))
            size = request.get("outputDimensionality") or 8
            digest = hashlib.sha256(text.encode()).digest() * (size // 32 + 1)
            embeddings.append({"values": [b / 255.0 for b in digest[:size]]})
        return json_reply(200, {"embeddings": embeddings})
