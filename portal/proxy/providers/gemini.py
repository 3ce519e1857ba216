"""Google Gemini API (``generateContent``, ``streamGenerateContent?alt=sse``, ``batchEmbedContents``).

Gemini 3 requires a function call's ``thoughtSignature`` to come back with it; the signature rides in
the OpenAI tool-call id (``gts<8 hex>_<base64url>``) so stateless clients return it untouched.
"""

from __future__ import annotations

import mimetypes
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
    embedding_texts,
    function_tools,
    image_url,
    max_output_tokens,
    parse_arguments,
    parse_data_url,
    stop_sequences,
    tool_choice,
    unsupported,
)
from portal.proxy.providers.shapes import (
    ChunkEncoder,
    assistant_choice,
    chat_completion,
    embeddings_list,
    new_id,
    tool_call,
)
from portal.proxy.providers.sse import DONE, iter_sse, new_stream
from portal.proxy.tokens import estimate_tokens

__all__ = ["GeminiAdapter", "to_gemini_request"]

DEFAULT_API_BASE = "https://generativelanguage.googleapis.com"
DEFAULT_API_VERSION = "v1beta"
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
_SIGNED_PREFIX = "gts"
_TO_URLSAFE = str.maketrans("+/", "-_")
_FROM_URLSAFE = str.maketrans("-_", "+/")


def _call_id(signature: str | None) -> str:
    if not signature:
        return new_id("call_")
    return f"{_SIGNED_PREFIX}{new_id('')[:8]}_{signature.translate(_TO_URLSAFE).rstrip('=')}"


def _signature(call_id: str) -> str | None:
    if len(call_id) > 12 and call_id.startswith(_SIGNED_PREFIX) and call_id[11] == "_":
        raw = call_id[12:].translate(_FROM_URLSAFE)
        return raw + "=" * (-len(raw) % 4)
    return None


def _user_part(part: dict[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    if kind == "text":
        return {"text": str(part.get("text", ""))}
    if kind == "image_url":
        url = image_url(part)
        data_url = parse_data_url(url)
        if data_url is None:
            mime = mimetypes.guess_type(url)[0] or "image/jpeg"
            return {"fileData": {"mimeType": mime, "fileUri": url}}
        return {"inlineData": {"mimeType": data_url[0], "data": data_url[1]}}
    raise bad_request(f"content part type {kind!r} is not supported by provider gemini")


def _tool_response(content: Any) -> dict[str, Any]:
    text = content_text(content)
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        value = None
    return value if isinstance(value, dict) else {"result": text}


def _parts(message: dict[str, Any], call_names: dict[str, str]) -> list[dict[str, Any]]:
    role = message.get("role")
    if role == "tool":
        call_id = str(message.get("tool_call_id", ""))
        name = call_names.get(call_id) or message.get("name")
        if not name:
            raise bad_request(f"tool message refers to unknown tool_call_id {call_id!r}")
        return [{"functionResponse": {"name": name, "response": _tool_response(message.get("content"))}}]
    parts = [_user_part(p) for p in content_parts(message.get("content"))]
    parts = [p for p in parts if p.get("text") != ""]
    if role == "assistant":
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            name = str(function.get("name", ""))
            call_id = str(call.get("id", ""))
            call_names[call_id] = name
            part: dict[str, Any] = {
                "functionCall": {"name": name, "args": parse_arguments(function.get("arguments"))}
            }
            signature = _signature(call_id)
            if signature:
                part["thoughtSignature"] = signature
            parts.append(part)
    return parts


def _generation_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    limit = max_output_tokens(body)
    if limit is not None:
        config["maxOutputTokens"] = limit
    for source, dest in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("n", "candidateCount"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if body.get(source) is not None:
            config[dest] = body[source]
    stops = stop_sequences(body)
    if stops:
        config["stopSequences"] = stops
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (response_format.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            config["responseJsonSchema"] = schema
    return config


def to_gemini_request(body: dict[str, Any]) -> dict[str, Any]:
    """Translate an OpenAI chat body into a Gemini ``GenerateContentRequest``."""
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    for message in body.get("messages") or ():
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(content_text(message.get("content")))
            continue
        if role not in ("user", "assistant", "tool"):
            raise bad_request(f"message role {role!r} is not supported by provider gemini")
        wire_role = "model" if role == "assistant" else "user"
        parts = _parts(message, call_names)
        if not parts:
            continue
        if contents and contents[-1]["role"] == wire_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": wire_role, "parts": parts})
    request: dict[str, Any] = {"contents": contents}
    if system:
        request["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    tools = function_tools(body)
    if tools:
        declarations = [
            {"name": f.name, "parametersJsonSchema": f.parameters}
            | ({"description": f.description} if f.description else {})
            for f in tools
        ]
        request["tools"] = [{"functionDeclarations": declarations}]
        choice = tool_choice(body)
        if choice is not None:
            mode = {"auto": "AUTO", "none": "NONE", "required": "ANY", "function": "ANY"}[choice[0]]
            calling: dict[str, Any] = {"mode": mode}
            if choice[1]:
                calling["allowedFunctionNames"] = [choice[1]]
            request["toolConfig"] = {"functionCallingConfig": calling}
    config = _generation_config(body)
    if config:
        request["generationConfig"] = config
    return request


class _FunctionCall(msgspec.Struct):
    name: str = ""
    args: Any = None


class _Part(msgspec.Struct):
    text: str | None = None
    thought: bool | None = None
    functionCall: _FunctionCall | None = None
    thoughtSignature: str | None = None


class _Content(msgspec.Struct):
    parts: list[_Part] = []


class _Candidate(msgspec.Struct):
    content: _Content | None = None
    finishReason: str | None = None
    index: int = 0


class _UsageMetadata(msgspec.Struct):
    promptTokenCount: int | None = None
    candidatesTokenCount: int | None = None
    thoughtsTokenCount: int | None = None
    cachedContentTokenCount: int | None = None


class _PromptFeedback(msgspec.Struct):
    blockReason: str | None = None


class _Error(msgspec.Struct):
    code: int = 502
    message: str = "upstream stream error"
    status: str | None = None


class _Response(msgspec.Struct):
    error: _Error | None = None
    candidates: list[_Candidate] = []
    usageMetadata: _UsageMetadata | None = None
    modelVersion: str | None = None
    responseId: str | None = None
    promptFeedback: _PromptFeedback | None = None


class _Embedding(msgspec.Struct):
    values: list[float] = []


class _Embeddings(msgspec.Struct):
    embeddings: list[_Embedding] = []


_decode_response = msgspec.json.Decoder(_Response).decode
_decode_embeddings = msgspec.json.Decoder(_Embeddings).decode
_encode = msgspec.json.encode


def _usage(metadata: _UsageMetadata | None) -> Usage | None:
    if metadata is None:
        return None
    completion = (metadata.candidatesTokenCount or 0) + (metadata.thoughtsTokenCount or 0)
    return Usage(metadata.promptTokenCount or 0, completion)


def _finish(reason: str, called: bool) -> str:
    finish = FINISH_REASONS.get(reason, "stop")
    return "tool_calls" if called and finish == "stop" else finish


def _arguments(call: _FunctionCall) -> str:
    return _encode(call.args if call.args is not None else {}).decode()


def to_chat_completion(content: bytes, model: str) -> ChatResult:
    """Translate a ``GenerateContentResponse`` into an OpenAI ``chat.completion``."""
    try:
        response = _decode_response(content)
    except msgspec.DecodeError:
        raise UpstreamError(502, "upstream returned invalid JSON", retryable=True) from None
    choices: list[dict[str, Any]] = []
    for position, candidate in enumerate(response.candidates):
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for part in candidate.content.parts if candidate.content else ():
            if part.functionCall is not None:
                call_id = _call_id(part.thoughtSignature)
                calls.append(tool_call(call_id, part.functionCall.name, _arguments(part.functionCall)))
            elif part.text and not part.thought:
                texts.append(part.text)
        finish = _finish(candidate.finishReason or "STOP", bool(calls))
        choices.append(assistant_choice(position, "".join(texts) if texts else None, calls, finish))
    if not choices and response.promptFeedback is not None and response.promptFeedback.blockReason:
        choices.append(assistant_choice(0, None, [], "content_filter"))
    usage = _usage(response.usageMetadata)
    cached = response.usageMetadata.cachedContentTokenCount if response.usageMetadata else None
    completion_id = "chatcmpl-" + (response.responseId or new_id(""))
    body = chat_completion(completion_id, response.modelVersion or model, choices, usage, cached)
    return ChatResult(body, usage)


def _stream_error(error: _Error) -> UpstreamError:
    status = error.code if 400 <= error.code < 600 else 502
    return UpstreamError(status, error.message, retryable=status >= 500 or status == 429)


async def _relay(
    response: UpstreamStreamResponse, stream: ProviderStream, model: str, client_wants_usage: bool
) -> AsyncIterator[bytes]:
    encoder: ChunkEncoder | None = None
    started: set[int] = set()
    tool_counts: dict[int, int] = {}
    cached: int | None = None
    try:
        async for _name, data in iter_sse(response.iter_chunks()):
            chunk = _decode_response(data)
            if chunk.error is not None:
                raise _stream_error(chunk.error)
            if encoder is None:
                encoder = ChunkEncoder(
                    "chatcmpl-" + (chunk.responseId or new_id("")), chunk.modelVersion or model
                )
            if chunk.usageMetadata is not None:
                stream.usage = _usage(chunk.usageMetadata)
                cached = chunk.usageMetadata.cachedContentTokenCount
            if not chunk.candidates and chunk.promptFeedback is not None and chunk.promptFeedback.blockReason:
                yield encoder.delta({"role": "assistant", "content": ""}, "content_filter")
            for candidate in chunk.candidates:
                index = candidate.index
                if index not in started:
                    started.add(index)
                    yield encoder.delta({"role": "assistant", "content": ""}, None, index)
                for part in candidate.content.parts if candidate.content else ():
                    if part.functionCall is not None:
                        position = tool_counts.get(index, 0)
                        tool_counts[index] = position + 1
                        arguments = _arguments(part.functionCall)
                        stream.delivered_chars += len(arguments)
                        call = {"index": position} | tool_call(
                            _call_id(part.thoughtSignature), part.functionCall.name, arguments
                        )
                        yield encoder.delta({"tool_calls": [call]}, None, index)
                    elif part.text and not part.thought:
                        stream.delivered_chars += len(part.text)
                        yield encoder.text(part.text, index)
                if candidate.finishReason:
                    finish = _finish(candidate.finishReason, index in tool_counts)
                    yield encoder.delta({}, finish, index)
    except msgspec.DecodeError:
        raise UpstreamError(502, "upstream sent an invalid stream event", retryable=True) from None
    finally:
        await response.aclose()
    if client_wants_usage and encoder is not None and stream.usage is not None:
        yield encoder.usage(stream.usage, cached)
    yield DONE


def _resource(model: str) -> str:
    return model if "/" in model else f"models/{model}"


class GeminiAdapter:
    name = "gemini"

    def _url(self, target: Target, method: str) -> tuple[str, dict[str, str]]:
        base = (target.api_base or DEFAULT_API_BASE).rstrip("/")
        version = target.api_version or DEFAULT_API_VERSION
        headers = {"Content-Type": "application/json"}
        if target.api_key:
            headers["x-goog-api-key"] = target.api_key
        for name, value in target.extra_headers:
            headers[name] = value
        return f"{base}/{version}/{_resource(target.upstream_model)}:{method}", headers

    async def chat(self, client: UpstreamClient, target: Target, body: dict[str, Any]) -> ChatResult:
        url, headers = self._url(target, "generateContent")
        response = await client.post(target, url, headers, _encode(to_gemini_request(body)))
        return to_chat_completion(response.content, target.upstream_model)

    async def stream_chat(
        self, client: UpstreamClient, target: Target, body: dict[str, Any]
    ) -> ProviderStream:
        url, headers = self._url(target, "streamGenerateContent?alt=sse")
        options = body.get("stream_options")
        client_wants_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        response = await client.open_stream(target, url, headers, _encode(to_gemini_request(body)))
        model = target.upstream_model
        return new_stream(lambda stream: _relay(response, stream, model, client_wants_usage), response.aclose)

    async def completions(self, client: UpstreamClient, target: Target, body: dict[str, Any]) -> ChatResult:
        raise unsupported(self.name, "/v1/completions")

    async def embeddings(self, client: UpstreamClient, target: Target, body: dict[str, Any]) -> ChatResult:
        texts = embedding_texts(body, self.name)
        url, headers = self._url(target, "batchEmbedContents")
        model_ref = _resource(target.upstream_model)
        dimensions = body.get("dimensions")
        requests: list[dict[str, Any]] = []
        for text in texts:
            request: dict[str, Any] = {"model": model_ref, "content": {"parts": [{"text": text}]}}
            if isinstance(dimensions, int):
                request["outputDimensionality"] = dimensions
            requests.append(request)
        response = await client.post(target, url, headers, _encode({"requests": requests}))
        try:
            vectors = [e.values for e in _decode_embeddings(response.content).embeddings]
        except msgspec.DecodeError:
            raise UpstreamError(502, "upstream returned invalid JSON", retryable=True) from None
        usage = Usage(sum(estimate_tokens(t) for t in texts), 0, estimated=True)
        encoding = body.get("encoding_format")
        content = embeddings_list(
            vectors, target.upstream_model, usage, encoding if isinstance(encoding, str) else None
        )
        return ChatResult(content, usage)
