"""The ``/v1`` endpoints as one lean ASGI app: the proxy's hot path.

Routes: ``POST /v1/chat/completions`` (JSON and SSE), ``POST /v1/completions``,
``POST /v1/embeddings``, ``GET /v1/models``. Each call: request id -> key (cache) -> JSON body ->
model and grant check -> completion cache (if enabled) -> router (retries, fallbacks) -> usage and
cost -> response -> one :class:`CallRecord` to the batched writer. Nothing here awaits a database
write; in steady state nothing here reads the database either.

It is mounted in the Litestar app as a raw ASGI handler so the hot path pays for no framework
machinery it does not need; errors are OpenAI error JSON, never a stack trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx
import msgspec

from portal.catalog.registry import DeploymentInfo
from portal.proxy.errors import ProxyError, error_body
from portal.proxy.gateway import Gateway
from portal.proxy.principal import KeyLookupUnavailable, Principal
from portal.proxy.providers.base import ChatResult, ProviderAdapter, ProviderStream, UpstreamError, Usage
from portal.proxy.router import ModelDenied, ModelNotFound, NoDeployment, RouteFailure
from portal.proxy.tokens import estimate_prompt_tokens
from portal.spend.records import CallRecord
from portal.timeutil import utcnow

__all__ = ["ProxyApp"]

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_JSON = b"application/json"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
_CLIENT_ROUTING_FIELDS = (
    "api_base",
    "base_url",
    "api_key",
    "api_version",
    "custom_llm_provider",
    "extra_headers",
)
_decode = msgspec.json.Decoder()
_INVALID_KEY = "Invalid API Key: the key is missing, unknown, revoked or expired."


class _ClientGone(Exception):
    """The client went away before its request was read."""


class _Content(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    message: _Content | None = None
    text: str | None = None


class _Answer(msgspec.Struct):
    choices: list[_Choice] = []


def _completion_chars(body: bytes) -> int:
    try:
        answer = msgspec.json.decode(body, type=_Answer)
    except msgspec.DecodeError:
        return 0
    return sum(len((c.message.content if c.message else None) or c.text or "") for c in answer.choices)


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ProxyError(413, f"request body larger than {limit} bytes", "invalid_request_error")
        if not message.get("more_body", False):
            if not chunks:
                return bytes(chunk)
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


def _headers(scope: Scope) -> tuple[str | None, str | None, str | None]:
    """(api key, request id, client ip) from the request headers."""
    key = rid = forwarded = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            text = value.decode("latin-1").strip()
            if text[:7].lower() == "bearer ":
                key = text[7:].strip()
        elif name == b"x-api-key":
            key = key or value.decode("latin-1").strip()
        elif name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _REQUEST_ID.match(candidate):
                rid = candidate
    client = scope.get("client")
    return key, rid, forwarded or (client[0] if client else None)


async def _send_json(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", _JSON), (b"content-length", str(len(body)).encode()), *extra],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _upstream_failure(failure: RouteFailure) -> ProxyError:
    error = failure.error
    if 400 <= error.status < 500:
        status = error.status
    elif error.status == 504:
        status = 504
    else:
        status = 502
    headers: tuple[tuple[bytes, bytes], ...] = ()
    if error.retry_after is not None:
        headers = ((b"retry-after", str(math.ceil(error.retry_after)).encode()),)
    return ProxyError(status, error.message, error.error_type or "upstream_error", headers=headers)


class ProxyApp:
    """ASGI app serving ``/v1``; ``gateway_of`` gives the running :class:`Gateway` (set at start-up)."""

    def __init__(self, gateway_of: Callable[[], Gateway]) -> None:
        self._gateway_of = gateway_of
        self._routes: dict[tuple[str, str], Callable[..., Awaitable[None]]] = {
            ("POST", "/chat/completions"): self._chat,
            ("POST", "/completions"): self._completions,
            ("POST", "/embeddings"): self._embeddings,
            ("GET", "/models"): self._models,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path.startswith("/v1/"):
            path = path[3:]
        path = path.rstrip("/") or "/"
        handler = self._routes.get((scope["method"], path))
        key, rid, client_ip = _headers(scope)
        request_id = rid or uuid.uuid4().hex
        extra = [(b"x-request-id", request_id.encode())]
        if handler is None:
            known = {p for _, p in self._routes}
            status, message = (
                (405, "method not allowed") if path in known else (404, f"unknown endpoint /v1{path}")
            )
            await _send_json(send, status, error_body(message, "invalid_request_error"), extra)
            return
        gateway = self._gateway_of()
        record = CallRecord(request_id=request_id, created_at=utcnow(), status_code=200, client_ip=client_ip)
        started = time.perf_counter()
        try:
            principal = await self._authenticate(gateway, key, record)
            await handler(gateway, principal, scope, receive, send, record, extra, started)
        except ProxyError as refusal:
            record.status_code = refusal.status
            record.error_type = refusal.error_type
            record.error_message = refusal.message
            body = error_body(refusal.message, refusal.error_type, refusal.code, refusal.param)
            await _send_json(send, refusal.status, body, [*extra, *refusal.headers])
        except _ClientGone:
            record.status_code = 499
            record.error_type = "client_disconnected"
        except Exception:
            log.exception("proxy: unexpected error (request %s)", request_id)
            record.status_code = 500
            record.error_type = "internal_error"
            body = error_body(f"internal error; request id {request_id}", "internal_error")
            with contextlib.suppress(Exception):
                await _send_json(send, 500, body, extra)
        if record.latency_ms == 0.0:
            record.latency_ms = (time.perf_counter() - started) * 1000
        gateway.writer.submit(record)

    async def _authenticate(self, gateway: Gateway, key: str | None, record: CallRecord) -> Principal:
        if not key:
            raise ProxyError(401, _INVALID_KEY, "invalid_request_error", "invalid_api_key")
        try:
            principal = await gateway.keys.lookup(key)
        except KeyLookupUnavailable:
            raise ProxyError(
                503,
                "the gateway cannot check keys right now (database unavailable); retry shortly",
                "service_unavailable",
            ) from None
        if principal is None or not principal.usable(time.time()):
            if principal is not None:
                self._attribute(record, principal)
            raise ProxyError(401, _INVALID_KEY, "invalid_request_error", "invalid_api_key")
        self._attribute(record, principal)
        if not principal.tenant_active:
            raise ProxyError(
                403, f"tenant {principal.tenant_slug!r} is suspended", "permission_error", "tenant_suspended"
            )
        if not principal.user_active:
            raise ProxyError(403, "the key's user is disabled", "permission_error", "user_disabled")
        return principal

    @staticmethod
    def _attribute(record: CallRecord, principal: Principal) -> None:
        record.api_key_id = principal.key_id
        record.key_prefix = principal.key_prefix
        record.tenant_id = principal.tenant_id
        record.user_id = principal.user_id

    @staticmethod
    async def _body(gateway: Gateway, receive: Receive, require: tuple[str, ...]) -> dict[str, Any]:
        """Read and check the JSON body; client-supplied routing fields are dropped."""
        raw = await _read_body(receive, gateway.settings.max_request_bytes)
        try:
            body = _decode.decode(raw)
        except msgspec.DecodeError:
            raise ProxyError(400, "the request body is not valid JSON", "invalid_request_error") from None
        if not isinstance(body, dict):
            raise ProxyError(400, "the request body must be a JSON object", "invalid_request_error")
        for name in require:
            if name not in body:
                raise ProxyError(
                    400, f"missing required parameter '{name}'", "invalid_request_error", param=name
                )
        if not isinstance(body["model"], str) or not body["model"]:
            raise ProxyError(
                400, "'model' must be a non-empty string", "invalid_request_error", param="model"
            )
        for name in _CLIENT_ROUTING_FIELDS:
            body.pop(name, None)
        return body

    @staticmethod
    def _resolve_errors(exc: Exception, model: str) -> ProxyError:
        if isinstance(exc, ModelNotFound):
            return ProxyError(
                404,
                f"The model '{model}' does not exist",
                "invalid_request_error",
                "model_not_found",
                param="model",
            )
        if isinstance(exc, ModelDenied):
            return ProxyError(
                403,
                f"This key is not allowed to use the model '{model}' (denied by its {exc.level} grants)",
                "permission_error",
                "model_not_allowed",
                param="model",
            )
        if isinstance(exc, NoDeployment):
            return ProxyError(
                503,
                f"the model '{model}' has no deployment that can be called right now",
                "service_unavailable",
            )
        assert isinstance(exc, RouteFailure)
        return _upstream_failure(exc)

    async def _call(
        self,
        gateway: Gateway,
        principal: Principal,
        model: str,
        record: CallRecord,
        invoke: Callable[[ProviderAdapter, httpx.AsyncClient, DeploymentInfo], Awaitable[Any]],
    ) -> tuple[Any, DeploymentInfo]:
        try:
            outcome = await gateway.router.call(gateway.catalog, principal, model, invoke)
        except (ModelNotFound, ModelDenied, NoDeployment, RouteFailure) as exc:
            if isinstance(exc, RouteFailure):
                self._deployment(record, exc.deployment)
                record.attempts = exc.attempts
            raise self._resolve_errors(exc, model) from None
        self._deployment(record, outcome.deployment)
        record.attempts = outcome.attempts
        return outcome.result, outcome.deployment

    @staticmethod
    def _deployment(record: CallRecord, deployment: DeploymentInfo) -> None:
        record.provider = deployment.provider
        record.upstream_model = deployment.target.upstream_model
        try:
            record.deployment_id = uuid.UUID(deployment.id)
        except ValueError:
            record.deployment_id = None

    @staticmethod
    def _bill(record: CallRecord, deployment: DeploymentInfo, usage: Usage) -> Decimal:
        record.prompt_tokens = usage.prompt_tokens
        record.completion_tokens = usage.completion_tokens
        record.estimated = usage.estimated
        record.cost = deployment.cost(usage)
        return record.cost

    async def _plain(
        self,
        gateway: Gateway,
        principal: Principal,
        body: dict[str, Any],
        send: Send,
        record: CallRecord,
        extra: list[tuple[bytes, bytes]],
        started: float,
        endpoint: str,
        method: Callable[[ProviderAdapter], Callable[..., Awaitable[ChatResult]]],
    ) -> None:
        record.endpoint = endpoint
        model = record.model = body["model"]
        cache_key = None
        if principal.cache_enabled:
            try:
                gateway.router.resolve(gateway.catalog, principal, model)
            except (ModelNotFound, ModelDenied) as exc:
                raise self._resolve_errors(exc, model) from None
            scope = str(principal.tenant_id or principal.key_id)
            cache_key = gateway.cache.key(f"{endpoint}:{scope}", body)
            cached = await gateway.cache.get(cache_key)
            if cached is not None:
                record.cached = True
                record.latency_ms = (time.perf_counter() - started) * 1000
                await _send_json(
                    send, 200, cached, [*extra, (b"x-portal-cache", b"hit"), (b"x-portal-cost", b"0")]
                )
                return
        result, deployment = await self._call(
            gateway, principal, model, record, lambda a, c, d: method(a)(c, d.target, body)
        )
        usage = result.usage
        if usage is None:
            usage = Usage(
                prompt_tokens=estimate_prompt_tokens(body),
                completion_tokens=math.ceil(_completion_chars(result.body) / 4),
                estimated=True,
            )
        cost = self._bill(record, deployment, usage)
        record.latency_ms = (time.perf_counter() - started) * 1000
        headers = [*extra, (b"x-portal-cost", str(cost).encode())]
        if cache_key is not None:
            headers.append((b"x-portal-cache", b"miss"))
        await _send_json(send, 200, result.body, headers)
        if cache_key is not None:
            gateway.cache.put(cache_key, model, result.body)

    async def _chat(
        self,
        gateway: Gateway,
        principal: Principal,
        scope: Scope,
        receive: Receive,
        send: Send,
        record: CallRecord,
        extra: list[tuple[bytes, bytes]],
        started: float,
    ) -> None:
        body = await self._body(gateway, receive, ("model", "messages"))
        if body.get("stream") is True:
            await self._stream(gateway, principal, body, receive, send, record, extra, started)
        else:
            await self._plain(
                gateway, principal, body, send, record, extra, started, "chat.completions", lambda a: a.chat
            )

    async def _completions(
        self,
        gateway: Gateway,
        principal: Principal,
        scope: Scope,
        receive: Receive,
        send: Send,
        record: CallRecord,
        extra: list[tuple[bytes, bytes]],
        started: float,
    ) -> None:
        body = await self._body(gateway, receive, ("model", "prompt"))
        if body.get("stream") is True:
            raise ProxyError(
                400,
                "streaming is not supported on /v1/completions; use /v1/chat/completions",
                "invalid_request_error",
                param="stream",
            )
        await self._plain(
            gateway, principal, body, send, record, extra, started, "completions", lambda a: a.completions
        )

    async def _embeddings(
        self,
        gateway: Gateway,
        principal: Principal,
        scope: Scope,
        receive: Receive,
        send: Send,
        record: CallRecord,
        extra: list[tuple[bytes, bytes]],
        started: float,
    ) -> None:
        body = await self._body(gateway, receive, ("model", "input"))
        await self._plain(
            gateway, principal, body, send, record, extra, started, "embeddings", lambda a: a.embeddings
        )

    async def _models(
        self,
        gateway: Gateway,
        principal: Principal,
        scope: Scope,
        receive: Receive,
        send: Send,
        record: CallRecord,
        extra: list[tuple[bytes, bytes]],
        started: float,
    ) -> None:
        record.endpoint = "models"
        data = []
        for name, entry in sorted(gateway.catalog.models.items()):
            providers = entry.providers_for(principal.tenant_id)
            if providers and principal.access.allows_any(name, providers):
                data.append({"id": name, "object": "model", "created": entry.created, "owned_by": "portal"})
        await _send_json(send, 200, msgspec.json.encode({"object": "list", "data": data}), extra)

    async def _stream(
        self,
        gateway: Gateway,
        principal: Principal,
        body: dict[str, Any],
        client_receive: Receive,
        send: Send,
        record: CallRecord,
        extra: list[tuple[bytes, bytes]],
        started: float,
    ) -> None:
        record.endpoint = "chat.completions"
        record.stream = True
        model = record.model = body["model"]
        stream, deployment = await self._call(
            gateway, principal, model, record, lambda a, c, d: a.stream_chat(c, d.target, body)
        )
        assert isinstance(stream, ProviderStream)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                    *extra,
                ],
            }
        )
        outcome = await _pump(stream, send, client_receive, record, started)
        usage = stream.usage
        if (
            outcome != "done"
            or usage is None
            or (usage.completion_tokens == 0 and stream.delivered_chars > 0)
        ):
            prompt = (
                usage.prompt_tokens
                if usage is not None and usage.prompt_tokens
                else estimate_prompt_tokens(body)
            )
            usage = Usage(
                prompt_tokens=prompt, completion_tokens=math.ceil(stream.delivered_chars / 4), estimated=True
            )
        self._bill(record, deployment, usage)
        record.latency_ms = (time.perf_counter() - started) * 1000


async def _pump(
    stream: ProviderStream, send: Send, client_receive: Receive, record: CallRecord, started: float
) -> str:
    """Relay the stream to the client; returns ``done``, ``disconnected`` or ``upstream_error``."""

    async def relay() -> str:
        first = True
        try:
            async for frame in stream.events:
                if first:
                    record.ttft_ms = (time.perf_counter() - started) * 1000
                    first = False
                await send({"type": "http.response.body", "body": frame, "more_body": True})
        except UpstreamError as error:
            record.status_code = 502 if error.status < 400 or error.status >= 500 else error.status
            record.error_type = error.error_type
            record.error_message = error.message
            frame = b"data: " + error_body(error.message, error.error_type) + b"\n\ndata: [DONE]\n\n"
            await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return "upstream_error"
        except OSError:
            return "disconnected"
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return "done"

    async def watch() -> None:
        while True:
            message = await client_receive()
            if message["type"] == "http.disconnect":
                return

    relay_task = asyncio.ensure_future(relay())
    watch_task = asyncio.ensure_future(watch())
    try:
        done, _ = await asyncio.wait({relay_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
        if relay_task in done:
            outcome = relay_task.result()
        else:
            relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await relay_task
            outcome = "disconnected"
    finally:
        watch_task.cancel()
        if not relay_task.done():
            relay_task.cancel()
        await stream.aclose()
    if outcome == "disconnected":
        record.status_code = 499
        record.error_type = "client_disconnected"
    return outcome
