"""OpenAI-compatible upstreams (OpenAI, Azure OpenAI, vLLM, Ollama, any base URL): near-passthrough.

The client's body goes upstream as is except for ``model`` (and streaming's ``stream_options``);
answers are passed through byte for byte while usage is read with minimal msgspec decodes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec
from multidict import CIMultiDict, CIMultiDictProxy

from portal.proxy.providers.base import (
    ChatResult,
    ProviderStream,
    Target,
    UpstreamClient,
    UpstreamError,
    Usage,
)
from portal.proxy.providers.client import UpstreamStreamResponse
from portal.proxy.providers.sse import DONE, frame, iter_sse_batches, new_stream

__all__ = ["AZURE_API_VERSION", "OpenAIAdapter"]

AZURE_API_VERSION = "2024-10-21"
_MAX_CACHED_ENDPOINTS = 4096


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _Envelope(msgspec.Struct):
    usage: _Usage | None = None


class _Function(msgspec.Struct):
    arguments: str | None = None


class _ToolCall(msgspec.Struct):
    function: _Function | None = None


class _Delta(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    text: str | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] | None = None
    usage: _Usage | None = None


_decode_envelope = msgspec.json.Decoder(_Envelope).decode
_decode_chunk = msgspec.json.Decoder(_Chunk).decode
_encode = msgspec.json.encode


def _usage(usage: _Usage) -> Usage:
    return Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0)


def _chunk_chars(chunk: _Chunk) -> int:
    chars = 0
    for choice in chunk.choices or ():
        delta = choice.delta
        if delta is None:
            if choice.text:
                chars += len(choice.text)
            continue
        if delta.content:
            chars += len(delta.content)
        if delta.reasoning_content:
            chars += len(delta.reasoning_content)
        if delta.tool_calls:
            for call in delta.tool_calls:
                if call.function is not None and call.function.arguments:
                    chars += len(call.function.arguments)
    return chars


async def _relay(
    response: UpstreamStreamResponse, stream: ProviderStream, client_wants_usage: bool
) -> AsyncIterator[bytes]:
    """Forward the upstream's frames, one write per network read, keeping usage and counts current."""
    done = False
    try:
        async for batch in iter_sse_batches(response.iter_chunks()):
            out: list[bytes] = []
            for _event, data in batch:
                if data == b"[DONE]":
                    done = True
                    break
                try:
                    chunk = _decode_chunk(data)
                except msgspec.DecodeError:
                    out.append(frame(data))
                    continue
                if chunk.usage is not None:
                    stream.usage = _usage(chunk.usage)
                    if not chunk.choices and not client_wants_usage:
                        continue
                stream.delivered_chars += _chunk_chars(chunk)
                out.append(frame(data))
            if done:
                out.append(DONE)
            if out:
                yield b"".join(out)
            if done:
                return
    finally:
        await response.aclose()
    yield DONE


class OpenAIAdapter:
    """One adapter per flavour; ``azure`` switches URL layout and the auth header."""

    def __init__(self, name: str, default_api_base: str | None, *, azure: bool = False) -> None:
        self.name = name
        self._default_api_base = default_api_base
        self._azure = azure
        self._endpoints: dict[tuple[int, str], tuple[Target, str, Mapping[str, str]]] = {}

    def _endpoint(self, target: Target, operation: str) -> tuple[str, Mapping[str, str]]:
        """URL and (read-only) headers for ``operation``, built once per target: targets are long-lived
        catalog entries, and a ready multidict spares aiohttp a conversion per request."""
        key = (id(target), operation)
        cached = self._endpoints.get(key)
        if cached is not None and cached[0] is target:
            return cached[1], cached[2]
        url, headers = self._build_endpoint(target, operation)
        if len(self._endpoints) >= _MAX_CACHED_ENDPOINTS:
            self._endpoints.clear()
        frozen = CIMultiDictProxy(CIMultiDict(headers))
        self._endpoints[key] = (target, url, frozen)
        return url, frozen

    def _build_endpoint(self, target: Target, operation: str) -> tuple[str, dict[str, str]]:
        base = (target.api_base or self._default_api_base or "").rstrip("/")
        if not base:
            raise UpstreamError(
                500, f"deployment for provider {self.name} has no api_base", error_type="config_error"
            )
        headers = {"Content-Type": "application/json"}
        if self._azure:
            if base.endswith("/openai/v1"):
                url = f"{base}/{operation}"
            else:
                version = target.api_version or AZURE_API_VERSION
                url = f"{base}/openai/deployments/{target.upstream_model}/{operation}?api-version={version}"
            if target.api_key:
                headers["api-key"] = target.api_key
        else:
            if self.name == "ollama" and not base.endswith("/v1"):
                base += "/v1"
            url = f"{base}/{operation}"
            if target.api_key:
                headers["Authorization"] = "Bearer " + target.api_key
        for name, value in target.extra_headers:
            headers[name] = value
        return url, headers

    async def _call(
        self, client: UpstreamClient, target: Target, operation: str, body: dict[str, Any]
    ) -> ChatResult:
        payload = dict(body)
        payload["model"] = target.upstream_model
        if "stream" in payload:
            payload["stream"] = False
        payload.pop("stream_options", None)
        url, headers = self._endpoint(target, operation)
        response = await client.post(target, url, headers, _encode(payload))
        content = response.content
        try:
            envelope = _decode_envelope(content)
        except msgspec.DecodeError:
            raise UpstreamError(502, "upstream returned invalid JSON", retryable=True) from None
        return ChatResult(content, _usage(envelope.usage) if envelope.usage is not None else None)

    async def chat(self, client: UpstreamClient, target: Target, body: dict[str, Any]) -> ChatResult:
        return await self._call(client, target, "chat/completions", body)

    async def completions(self, client: UpstreamClient, target: Target, body: dict[str, Any]) -> ChatResult:
        return await self._call(client, target, "completions", body)

    async def embeddings(self, client: UpstreamClient, target: Target, body: dict[str, Any]) -> ChatResult:
        return await self._call(client, target, "embeddings", body)

    async def stream_chat(
        self, client: UpstreamClient, target: Target, body: dict[str, Any]
    ) -> ProviderStream:
        payload = dict(body)
        payload["model"] = target.upstream_model
        payload["stream"] = True
        options = body.get("stream_options")
        if isinstance(options, dict):
            client_wants_usage = bool(options.get("include_usage"))
            payload["stream_options"] = {**options, "include_usage": True}
        else:
            client_wants_usage = False
            payload["stream_options"] = {"include_usage": True}
        url, headers = self._endpoint(target, "chat/completions")
        response = await client.open_stream(target, url, headers, _encode(payload))
        return new_stream(lambda stream: _relay(response, stream, client_wants_usage), response.aclose)
