"""Fake Bedrock Runtime Converse API: SigV4-verified ``/model/{modelId}/converse`` and
``/converse-stream`` answering in the binary AWS event stream."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import unquote

import msgspec

from portal.proxy.providers.base import Target
from tests.fakes.eventstream import encode_event, encode_exception
from tests.fakes.server import Behaviour, Recorded, Reply, json_reply, split_text
from tests.fakes.sigv4 import SignatureProblem, verify_sigv4

__all__ = ["BedrockWire", "model_id"]

ACCESS_KEY = "AKIAFAKEBEDROCK00001"
SECRET_KEY = "fake/Secret+Key0123456789abcdefghijklmn"
SESSION_ACCESS_KEY = "ASIAFAKEBEDROCK00002"
SESSION_SECRET = "session/Secret+Key0123456789abcdefghijk"
SESSION_TOKEN = "FwoGZXIvYXdzEFakeSessionToken/+=="
REGION = "us-east-1"

_ERRORS = {
    400: ("ValidationException", "Malformed input request, please reformat your input and try again."),
    403: ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
    404: (
        "ResourceNotFoundException",
        "Could not resolve the foundation model from the provided model identifier.",
    ),
    408: ("ModelTimeoutException", "Model has timed out in processing the request."),
    424: ("ModelErrorException", "The model returned an error."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The server encountered an internal error."),
    503: ("ServiceUnavailableException", "The service is unavailable. Please try again later."),
}
_BLOCK_KEYS = {"text", "image", "document", "toolUse", "toolResult", "reasoningContent", "cachePoint"}
_INFERENCE_KEYS = {"maxTokens", "temperature", "topP", "stopSequences"}
_TOP_LEVEL = {
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "guardrailConfig",
    "additionalModelRequestFields",
    "additionalModelResponseFieldPaths",
    "promptVariables",
    "requestMetadata",
    "performanceConfig",
}


def _error(status: int, error_type: str, message: str) -> Reply:
    return json_reply(
        status,
        {"message": message},
        [("x-amzn-ErrorType", f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/")],
    )


def _validate(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "Malformed input request"
    unknown = set(body) - _TOP_LEVEL
    if unknown:
        return f"extraneous key [{sorted(unknown)[0]}] is not permitted"
    if set(body.get("inferenceConfig") or {}) - _INFERENCE_KEYS:
        return "inferenceConfig: extraneous key is not permitted"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "A conversation must start with a user message."
    uses_tools = False
    for index, message in enumerate(messages):
        if message.get("role") not in ("user", "assistant"):
            return f"messages.{index}.role: must be user or assistant"
        content = message.get("content")
        if not isinstance(content, list) or not content:
            return f"messages.{index}.content: must not be empty"
        for block in content:
            if len(block) != 1 or next(iter(block)) not in _BLOCK_KEYS:
                return f"messages.{index}.content: each block must have exactly one member"
            if block.get("text") == "":
                return "The text field in the ContentBlock object is blank."
            uses_tools = uses_tools or "toolUse" in block or "toolResult" in block
    if uses_tools and not body.get("toolConfig"):
        return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
    return None


def _stop_reason(behaviour: Behaviour) -> str:
    if behaviour.truncated:
        return "max_tokens"
    return "tool_use" if behaviour.tool_calls else "end_turn"


def _usage(behaviour: Behaviour) -> dict[str, int]:
    usage = {
        "inputTokens": behaviour.prompt_tokens - behaviour.cached_tokens,
        "outputTokens": behaviour.completion_tokens,
        "totalTokens": behaviour.prompt_tokens + behaviour.completion_tokens,
    }
    if behaviour.cached_tokens:
        usage["cacheReadInputTokens"] = behaviour.cached_tokens
    return usage


def model_id(request: Recorded) -> str:
    """The (URL-decoded) model id or inference-profile ARN a Converse request was sent to."""
    return unquote(request.raw_path.split("/")[2])


class BedrockWire:
    name = "bedrock"
    api_key = f"{ACCESS_KEY}:{SECRET_KEY}"
    session_api_key = f"{SESSION_ACCESS_KEY}:{SESSION_SECRET}:{SESSION_TOKEN}"
    region = REGION

    def target(self, base_url: str, model: str | None) -> Target:
        return Target(
            "bedrock",
            model or "anthropic.claude-3-5-haiku-20241022-v1:0",
            api_base=base_url,
            api_key=self.api_key,
            region=self.region,
        )

    def check_auth(self, request: Recorded) -> Reply | None:
        credentials = {ACCESS_KEY: (SECRET_KEY, None), SESSION_ACCESS_KEY: (SESSION_SECRET, SESSION_TOKEN)}
        try:
            verify_sigv4(request, credentials, self.region, "bedrock")
        except SignatureProblem as problem:
            return _error(403, problem.error_type, problem.message)
        return None

    def error(self, request: Recorded, behaviour: Behaviour) -> Reply:
        error_type, message = _ERRORS.get(behaviour.status, ("InternalServerException", "Upstream error."))
        return _error(behaviour.status, behaviour.error_type or error_type, behaviour.message or message)

    def handle(self, request: Recorded, behaviour: Behaviour) -> Reply:
        parts = request.path.split("/")
        if (
            len(request.raw_path.split("/")) != 4
            or parts[1] != "model"
            or parts[-1] not in ("converse", "converse-stream")
        ):
            return _error(404, "UnknownOperationException", "Unknown operation")
        problem = _validate(request.json)
        if problem:
            return _error(400, "ValidationException", problem)
        headers = [("x-amzn-RequestId", str(uuid.uuid4()))]
        if parts[-1] == "converse-stream":
            return Reply(200, self._stream(behaviour), "application/vnd.amazon.eventstream", headers)
        content: list[dict[str, Any]] = []
        if not behaviour.tool_calls:
            content.append({"text": behaviour.text})
        for i, (name, args) in enumerate(behaviour.tool_calls):
            content.append({"toolUse": {"toolUseId": f"tooluse_fake_{i}", "name": name, "input": args}})
        answer: dict[str, Any] = {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": _stop_reason(behaviour),
            "metrics": {"latencyMs": 12},
        }
        if not behaviour.omit_usage:
            answer["usage"] = _usage(behaviour)
        return json_reply(200, answer, headers)

    def _stream(self, behaviour: Behaviour) -> list[bytes]:
        frames = [encode_event("messageStart", {"role": "assistant"})]
        index = 0
        if not behaviour.tool_calls:
            for position, piece in enumerate(split_text(behaviour.text, behaviour.chunks)):
                frames.append(
                    encode_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
                )
                if position == 0 and behaviour.stream_error:
                    frames.append(
                        encode_exception(
                            behaviour.error_type or "throttlingException", behaviour.stream_error
                        )
                    )
                    return frames
            frames.append(encode_event("contentBlockStop", {"contentBlockIndex": 0}))
            index = 1
        for i, (name, args) in enumerate(behaviour.tool_calls):
            start = {"toolUse": {"toolUseId": f"tooluse_fake_{i}", "name": name}}
            frames.append(encode_event("contentBlockStart", {"contentBlockIndex": index, "start": start}))
            for piece in split_text(msgspec.json.encode(args).decode(), behaviour.chunks):
                delta = {"toolUse": {"input": piece}}
                frames.append(encode_event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta}))
            frames.append(encode_event("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        frames.append(encode_event("messageStop", {"stopReason": _stop_reason(behaviour)}))
        if not behaviour.omit_usage:
            frames.append(
                encode_event("metadata", {"usage": _usage(behaviour), "metrics": {"latencyMs": 12}})
            )
        return frames
