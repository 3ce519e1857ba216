"""AWS Bedrock Converse API (``converse`` and binary-event-stream ``converse-stream``), SigV4-signed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import msgspec
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]
from botocore.eventstream import EventStreamBuffer, ParserError  # type: ignore[import-untyped]

from portal.proxy.providers.base import (
    ChatResult,
    ProviderStream,
    Target,
    UpstreamClient,
    UpstreamError,
    Usage,
)
from portal.proxy.providers.client import UpstreamResponse, UpstreamStreamResponse
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
from portal.proxy.providers.sse import DONE, new_stream

__all__ = ["BedrockAdapter", "sign_headers", "to_converse_request"]

SERVICE = "bedrock"
DEFAULT_REGION = "us-east-1"
EVENT_STREAM = "application/vnd.amazon.eventstream"
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
_EXCEPTION_STATUS = {
    "validationException": 400,
    "accessDeniedException": 403,
    "resourceNotFoundException": 404,
    "modelTimeoutException": 408,
    "modelStreamErrorException": 424,
    "throttlingException": 429,
    "internalServerException": 500,
    "serviceUnavailableException": 503,
}
_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}


def region_of(target: Target) -> str:
    """The signing region: the target's, else the one in an ARN model id, else us-east-1."""
    if target.region:
        return target.region
    if target.upstream_model.startswith("arn:"):
        fields = target.upstream_model.split(":")
        if len(fields) > 3 and fields[3]:
            return fields[3]
    return DEFAULT_REGION


def _credentials(api_key: str | None) -> Any:
    fields = (api_key or "").split(":", 2)
    if len(fields) < 2 or not fields[0] or not fields[1]:
        raise UpstreamError(
            500,
            "bedrock credentials must be ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]",
            error_type="config_error",
        )
    return Credentials(fields[0], fields[1], fields[2] if len(fields) == 3 else None)


def sign_headers(target: Target, url: str, body: bytes, accept: str) -> dict[str, str]:
    """SigV4 headers (``Authorization``, ``X-Amz-Date``, ...) for a POST of ``body`` to ``url``."""
    request = AWSRequest(
        method="POST", url=url, data=body, headers={"Content-Type": "application/json", "Accept": accept}
    )
    SigV4Auth(_credentials(target.api_key), SERVICE, region_of(target)).add_auth(request)
    headers = {str(name): str(value) for name, value in request.headers.items()}
    for name, value in target.extra_headers:
        headers[name] = value
    return headers


def _url(target: Target, operation: str) -> str:
    base = target.api_base or f"https://bedrock-runtime.{region_of(target)}.amazonaws.com"
    return f"{base.rstrip('/')}/model/{quote(target.upstream_model, safe='')}/{operation}"


def _user_block(part: dict[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    if kind == "text":
        return {"text": str(part.get("text", ""))}
    if kind == "image_url":
        data_url = parse_data_url(image_url(part))
        if data_url is None:
            raise bad_request("provider bedrock accepts images only as base64 data URLs")
        image_format = _IMAGE_FORMATS.get(data_url[0])
        if image_format is None:
            raise bad_request(f"image type {data_url[0]!r} is not supported by provider bedrock")
        return {"image": {"format": image_format, "source": {"bytes": data_url[1]}}}
    raise bad_request(f"content part type {kind!r} is not supported by provider bedrock")


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    if message.get("role") == "tool":
        result = {
            "toolUseId": str(message.get("tool_call_id", "")),
            "content": [{"text": content_text(message.get("content"))}],
        }
        return [{"toolResult": result}]
    blocks = [_user_block(part) for part in content_parts(message.get("content"))]
    blocks = [b for b in blocks if b.get("text") != ""]
    if message.get("role") == "assistant":
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            use = {
                "toolUseId": call.get("id"),
                "name": function.get("name"),
                "input": parse_arguments(function.get("arguments")),
            }
            blocks.append({"toolUse": use})
    return blocks


def _tool_config(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = function_tools(body)
    if not tools:
        return None
    specs = [{"toolSpec": {"name": f.name, "inputSchema": {"json": f.parameters}}} for f in tools]
    for spec, function in zip(specs, tools, strict=True):
        if function.description:
            spec["toolSpec"]["description"] = function.description
    config: dict[str, Any] = {"tools": specs}
    choice = tool_choice(body)
    if choice is not None and choice[0] == "required":
        config["toolChoice"] = {"any": {}}
    elif choice is not None and choice[0] == "function":
        config["toolChoice"] = {"tool": {"name": choice[1]}}
    return config


def to_converse_request(body: dict[str, Any]) -> dict[str, Any]:
    """Translate an OpenAI chat body into a Converse request (the model id travels in the URL)."""
    system: list[dict[str, str]] = []
    messages: list[dict[str, Any]] = []
    for message in body.get("messages") or ():
        role = message.get("role")
        if role in ("system", "developer"):
            text = content_text(message.get("content"))
            if text:
                system.append({"text": text})
            continue
        if role not in ("user", "assistant", "tool"):
            raise bad_request(f"message role {role!r} is not supported by provider bedrock")
        wire_role = "assistant" if role == "assistant" else "user"
        blocks = _blocks(message)
        if not blocks:
            continue
        if messages and messages[-1]["role"] == wire_role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": wire_role, "content": blocks})
    request: dict[str, Any] = {"messages": messages}
    if system:
        request["system"] = system
    inference: dict[str, Any] = {}
    limit = max_output_tokens(body)
    if limit is not None:
        inference["maxTokens"] = limit
    if body.get("temperature") is not None:
        inference["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        inference["topP"] = body["top_p"]
    stops = stop_sequences(body)
    if stops:
        inference["stopSequences"] = stops
    if inference:
        request["inferenceConfig"] = inference
    tools = _tool_config(body)
    if tools is not None:
        request["toolConfig"] = tools
    return request


class _Usage(msgspec.Struct):
    inputTokens: int | None = None
    outputTokens: int | None = None
    cacheReadInputTokens: int | None = None
    cacheWriteInputTokens: int | None = None


class _ToolUse(msgspec.Struct):
    toolUseId: str = ""
    name: str = ""
    input: Any = None


class _Block(msgspec.Struct):
    text: str | None = None
    toolUse: _ToolUse | None = None


class _Message(msgspec.Struct):
    content: list[_Block] = []


class _Output(msgspec.Struct):
    message: _Message | None = None


class _Converse(msgspec.Struct):
    output: _Output | None = None
    stopReason: str | None = None
    usage: _Usage | None = None


class _ToolUseStart(msgspec.Struct):
    toolUseId: str = ""
    name: str = ""


class _Start(msgspec.Struct):
    toolUse: _ToolUseStart | None = None


class _ToolUseDelta(msgspec.Struct):
    input: str = ""


class _Delta(msgspec.Struct):
    text: str | None = None
    toolUse: _ToolUseDelta | None = None


class _StreamEvent(msgspec.Struct):
    contentBlockIndex: int = 0
    start: _Start | None = None
    delta: _Delta | None = None
    stopReason: str | None = None
    usage: _Usage | None = None
    message: str | None = None


_decode_converse = msgspec.json.Decoder(_Converse).decode
_decode_event = msgspec.json.Decoder(_StreamEvent).decode
_encode = msgspec.json.encode


def _usage(usage: _Usage) -> Usage:
    prompt = (usage.inputTokens or 0) + (usage.cacheReadInputTokens or 0) + (usage.cacheWriteInputTokens or 0)
    return Usage(prompt, usage.outputTokens or 0)


def _completion_id(response: UpstreamResponse | UpstreamStreamResponse) -> str:
    request_id = response.headers.get("x-amzn-requestid")
    return "chatcmpl-" + request_id if request_id else new_id()


def to_chat_completion(response: UpstreamResponse, model: str) -> ChatResult:
    """Translate a Converse answer into an OpenAI ``chat.completion``."""
    try:
        answer = _decode_converse(response.content)
    except msgspec.DecodeError:
        raise UpstreamError(502, "upstream returned invalid JSON", retryable=True) from None
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    blocks = answer.output.message.content if answer.output and answer.output.message else []
    for block in blocks:
        if block.toolUse is not None:
            use = block.toolUse
            arguments = _encode(use.input if use.input is not None else {}).decode()
            calls.append(tool_call(use.toolUseId or new_id("tooluse_"), use.name, arguments))
        elif block.text:
            texts.append(block.text)
    usage = _usage(answer.usage) if answer.usage is not None else None
    cached = answer.usage.cacheReadInputTokens if answer.usage is not None else None
    finish = FINISH_REASONS.get(answer.stopReason or "", "stop")
    choice = assistant_choice(0, "".join(texts) if texts else None, calls, finish)
    return ChatResult(chat_completion(_completion_id(response), model, [choice], usage, cached), usage)


def _stream_exception(headers: dict[str, Any], payload: bytes) -> UpstreamError:
    if headers.get(":message-type") == "error":
        message = str(headers.get(":error-message") or headers.get(":error-code") or "stream error")
        return UpstreamError(502, message, retryable=True)
    kind = str(headers.get(":exception-type") or "internalServerException")
    try:
        message = _decode_event(payload).message or kind
    except msgspec.DecodeError:
        message = kind
    status = _EXCEPTION_STATUS.get(kind, 502)
    retryable = status >= 500 or status in (408, 429)
    return UpstreamError(status, message, error_type=kind, retryable=retryable)


async def _relay(
    response: UpstreamStreamResponse, stream: ProviderStream, model: str, client_wants_usage: bool
) -> AsyncIterator[bytes]:
    encoder = ChunkEncoder(_completion_id(response), model)
    tool_indexes: dict[int, int] = {}
    cached: int | None = None
    buffer = EventStreamBuffer()
    try:
        async for data in response.iter_chunks():
            buffer.add_data(data)
            for message in buffer:
                headers: dict[str, Any] = message.headers
                if headers.get(":message-type") != "event":
                    raise _stream_exception(headers, message.payload)
                kind = headers.get(":event-type")
                event = _decode_event(message.payload)
                if kind == "contentBlockDelta" and event.delta is not None:
                    delta = event.delta
                    if delta.text:
                        stream.delivered_chars += len(delta.text)
                        yield encoder.text(delta.text)
                    elif delta.toolUse is not None and event.contentBlockIndex in tool_indexes:
                        stream.delivered_chars += len(delta.toolUse.input)
                        index = tool_indexes[event.contentBlockIndex]
                        call = {"index": index, "function": {"arguments": delta.toolUse.input}}
                        yield encoder.delta({"tool_calls": [call]})
                elif kind == "messageStart":
                    yield encoder.delta({"role": "assistant", "content": ""})
                elif kind == "contentBlockStart" and event.start is not None and event.start.toolUse:
                    start = event.start.toolUse
                    index = tool_indexes[event.contentBlockIndex] = len(tool_indexes)
                    call = {"index": index} | tool_call(start.toolUseId or new_id("tooluse_"), start.name, "")
                    yield encoder.delta({"tool_calls": [call]})
                elif kind == "messageStop":
                    yield encoder.delta({}, FINISH_REASONS.get(event.stopReason or "", "stop"))
                elif kind == "metadata" and event.usage is not None:
                    stream.usage = _usage(event.usage)
                    cached = event.usage.cacheReadInputTokens
    except (msgspec.DecodeError, ParserError):
        raise UpstreamError(502, "upstream sent an invalid event stream", retryable=True) from None
    finally:
        await response.aclose()
    if client_wants_usage and stream.usage is not None:
        yield encoder.usage(stream.usage, cached)
    yield DONE


class BedrockAdapter:
    name = "bedrock"

    async def chat(self, client: UpstreamClient, target: Target, body: dict[str, Any]) -> ChatResult:
        url = _url(target, "converse")
        content = _encode(to_converse_request(body))
        headers = sign_headers(target, url, content, "application/json")
        response = await client.post(target, url, headers, content)
        return to_chat_completion(response, target.upstream_model)

    async def stream_chat(
        self, client: UpstreamClient, target: Target, body: dict[str, Any]
    ) -> ProviderStream:
        url = _url(target, "converse-stream")
        content = _encode(to_converse_request(body))
        headers = sign_headers(target, url, content, EVENT_STREAM)
        options = body.get("stream_options")
        client_wants_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        response = await client.open_stream(target, url, headers, content)
        model = target.upstream_model
        return new_stream(lambda stream: _relay(response, stream, model, client_wants_usage), response.aclose)

    async def completions(self, client: UpstreamClient, target: Target, body: dict[str, Any]) -> ChatResult:
        raise unsupported(self.name, "/v1/completions")

    async def embeddings(self, client: UpstreamClient, target: Target, body: dict[str, Any]) -> ChatResult:
        raise unsupported(self.name, "/v1/embeddings")
