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
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec

from portal.catalog.registry import DeploymentInfo, ModelEntry
from portal.limits.model import Admission, Ticket
from portal.limits.service import LimiterUnavailable
from portal.ops.logs import REQUEST_ID
from portal.proxy.errors import ProxyError, error_body
from portal.proxy.gateway import Gateway
from portal.proxy.principal import KeyLookupUnavailable, Principal
from portal.proxy.providers.base import (
    ChatResult,
    ProviderAdapter,
    ProviderStream,
    UpstreamClient,
    UpstreamError,
    Usage,
)
from portal.proxy.router import ModelDenied, ModelNotFound, NoDeployment, RouteFailure
from portal.proxy.tokens import estimate_prompt_tokens
from portal.proxy.usage import usage_report
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
_MAX_CAPTURED_FRAMES = 4096


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
    """(api key, request id, client ip); the server already resolved ``X-Forwarded-For`` from trusted
    proxies into ``scope["client"]``."""
    key = rid = None
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
    return key, rid, client[0] if client else None


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


@dataclass(slots=True)
class _Call:
    """One request in flight: who asked, how to answer, and the record being filled in."""

    gateway: Gateway
    principal: Principal
    receive: Receive
    send: Send
    record: CallRecord
    headers: list[tuple[bytes, bytes]]
    started: float
    ticket: Ticket | None = None
    entry: ModelEntry | None = None

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    async def body(self, require: tuple[str, ...]) -> dict[str, Any]:
        """Read and check the JSON body; client-supplied routing fields are dropped."""
        raw = await _read_body(self.receive, self.gateway.settings.max_request_bytes)
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
        self.record.model = body["model"]
        return body

    async def admit(self, body: dict[str, Any], *, completion: bool = True) -> None:
        """Check the model, then reserve the call's estimated cost and tokens at every level."""
        plan = self.principal.plan
        if plan.empty:
            return
        gateway = self.gateway
        model = self.record.model or ""
        try:
            entry = self.entry = gateway.router.resolve(gateway.catalog, self.principal, model)
        except (ModelNotFound, ModelDenied) as exc:
            raise _refusal(exc, model) from None
        deployments = entry.deployments_for(self.principal.tenant_id)
        input_price = max((d.input_price for d in deployments), default=Decimal(0))
        output_price = max((d.output_price for d in deployments), default=Decimal(0))
        limiter = gateway.limiter
        allowance = limiter.completion_allowance(body) if completion else 0
        cost, tokens = limiter.estimate(estimate_prompt_tokens(body), allowance, input_price, output_price)
        try:
            admission = await limiter.admit(plan, self.record.request_id, cost, tokens)
        except LimiterUnavailable:
            raise ProxyError(
                503,
                "limits cannot be checked right now (the limits backend is unavailable); retry shortly",
                "service_unavailable",
            ) from None
        rate = [(name.encode(), value.encode()) for name, value in admission.headers.items()]
        if admission.denied is not None:
            self.record.denied = admission.denied
            self.record.denied_level = admission.level
            raise _limit_refusal(admission, rate)
        self.ticket = admission.ticket
        self.headers.extend(rate)

    async def route(
        self, invoke: Callable[[ProviderAdapter, UpstreamClient, DeploymentInfo], Awaitable[Any]]
    ) -> tuple[Any, DeploymentInfo]:
        """Call the upstream through the router; refusals and failures become :class:`ProxyError`."""
        model = self.record.model or ""
        began = time.perf_counter()
        try:
            outcome = await self.gateway.router.call(
                self.gateway.catalog, self.principal, model, invoke, self.entry
            )
        except RouteFailure as failure:
            self.record.upstream_ms += (time.perf_counter() - began) * 1000
            self._deployment(failure.deployment)
            self.record.attempts = failure.attempts
            raise _upstream_failure(failure) from None
        except (ModelNotFound, ModelDenied, NoDeployment) as exc:
            raise _refusal(exc, model) from None
        self.record.upstream_ms += (time.perf_counter() - began) * 1000
        self._deployment(outcome.deployment)
        self.record.attempts = outcome.attempts
        return outcome.result, outcome.deployment

    def _deployment(self, deployment: DeploymentInfo) -> None:
        self.record.provider = deployment.provider
        self.record.upstream_model = deployment.target.upstream_model
        self.record.deployment_id = deployment.uuid

    def bill(self, deployment: DeploymentInfo, usage: Usage) -> Decimal:
        """Record ``usage`` and its exact cost at the deployment's prices."""
        self.record.prompt_tokens = usage.prompt_tokens
        self.record.completion_tokens = usage.completion_tokens
        self.record.estimated = usage.estimated
        self.record.cost = deployment.cost(usage)
        self.record.latency_ms = self.elapsed_ms()
        return self.record.cost


def _limit_refusal(admission: Admission, headers: list[tuple[bytes, bytes]]) -> ProxyError:
    retry = (
        ()
        if admission.retry_after is None
        else ((b"retry-after", str(math.ceil(admission.retry_after)).encode()),)
    )
    if admission.denied == "budget":
        return ProxyError(
            402, f"Budget has been exceeded: {admission.detail}", "budget_exceeded", "budget_exceeded"
        )
    if admission.denied == "quota":
        return ProxyError(
            429,
            f"Token quota exceeded: {admission.detail}",
            "insufficient_quota",
            "insufficient_quota",
            headers=retry,
        )
    what = "Too many parallel requests" if admission.denied == "parallel" else "Rate limit reached"
    return ProxyError(
        429,
        f"{what} for this {admission.level}: limit {admission.detail}",
        "rate_limit_exceeded",
        f"rate_limit_{admission.denied}",
        headers=(*retry, *headers),
    )


def _refusal(exc: Exception, model: str) -> ProxyError:
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
    return ProxyError(
        503, f"the model '{model}' has no deployment that can be called right now", "service_unavailable"
    )


Method = Callable[[ProviderAdapter], Callable[[UpstreamClient, Any, dict[str, Any]], Awaitable[ChatResult]]]


class ProxyApp:
    """ASGI app serving ``/v1``; ``gateway_of`` gives the running :class:`Gateway` (set at start-up)."""

    def __init__(self, gateway_of: Callable[[], Gateway]) -> None:
        self._gateway_of = gateway_of
        self._routes: dict[tuple[str, str], tuple[Callable[[_Call], Awaitable[None]], str]] = {
            ("POST", "/chat/completions"): (self._chat, "chat.completions"),
            ("POST", "/completions"): (self._completions, "completions"),
            ("POST", "/embeddings"): (self._embeddings, "embeddings"),
            ("GET", "/models"): (self._models, "models"),
            ("GET", "/me/usage"): (self._me_usage, "me.usage"),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path.startswith("/v1/"):
            path = path[3:]
        path = path.rstrip("/") or "/"
        route = self._routes.get((scope["method"], path))
        key, rid, client_ip = _headers(scope)
        request_id = rid or os.urandom(16).hex()
        headers = [(b"x-request-id", request_id.encode())]
        if route is None:
            known = {p for _, p in self._routes}
            status, message = (
                (405, "method not allowed") if path in known else (404, f"unknown endpoint /v1{path}")
            )
            await _send_json(send, status, error_body(message, "invalid_request_error"), headers)
            return
        handler, endpoint = route
        REQUEST_ID.set(request_id)
        gateway = self._gateway_of()
        record = CallRecord(
            request_id=request_id,
            created_at=utcnow(),
            status_code=200,
            client_ip=client_ip,
            endpoint=endpoint,
        )
        started = time.perf_counter()
        call: _Call | None = None
        cut: asyncio.CancelledError | None = None
        try:
            principal = await _authenticate(gateway, key, record)
            call = _Call(gateway, principal, receive, send, record, headers, started)
            await handler(call)
        except ProxyError as refusal:
            record.status_code = refusal.status
            record.error_type = refusal.error_type
            record.error_message = refusal.message
            body = error_body(refusal.message, refusal.error_type, refusal.code, refusal.param)
            await _send_json(send, refusal.status, body, [*headers, *refusal.headers])
        except _ClientGone:
            record.status_code = 499
            record.error_type = "client_disconnected"
        except Exception:
            log.exception("proxy: unexpected error (request %s)", request_id)
            record.status_code = 500
            record.error_type = "internal_error"
            body = error_body(f"internal error; request id {request_id}", "internal_error")
            with contextlib.suppress(Exception):
                await _send_json(send, 500, body, headers)
        except asyncio.CancelledError as exc:  # uvicorn: the shutdown grace period ran out
            cut = exc
            record.status_code = 503
            record.error_type = "cancelled"
            record.error_message = "the server cancelled the call (its shutdown grace period ran out?)"
        if record.latency_ms == 0.0:
            record.latency_ms = (time.perf_counter() - started) * 1000
        gateway.writer.submit(record)
        if call is not None and call.ticket is not None:
            await gateway.limiter.settle(
                call.ticket, record.cost, record.prompt_tokens + record.completion_tokens
            )
        if cut is not None:
            raise cut

    async def _chat(self, call: _Call) -> None:
        body = await call.body(("model", "messages"))
        if body.get("stream") is True:
            await _stream(call, body)
        else:
            await _plain(call, body, "chat.completions", lambda a: a.chat)

    async def _completions(self, call: _Call) -> None:
        body = await call.body(("model", "prompt"))
        if body.get("stream") is True:
            raise ProxyError(
                400,
                "streaming is not supported on /v1/completions; use /v1/chat/completions",
                "invalid_request_error",
                param="stream",
            )
        await _plain(call, body, "completions", lambda a: a.completions)

    async def _embeddings(self, call: _Call) -> None:
        await _plain(call, await call.body(("model", "input")), "embeddings", lambda a: a.embeddings)

    async def _models(self, call: _Call) -> None:
        principal = call.principal
        data = []
        for name, entry in sorted(call.gateway.catalog.models.items()):
            providers = entry.providers_for(principal.tenant_id)
            if providers and principal.access.allows_any(name, providers):
                data.append({"id": name, "object": "model", "created": entry.created, "owned_by": "portal"})
        await _send_json(call.send, 200, msgspec.json.encode({"object": "list", "data": data}), call.headers)

    async def _me_usage(self, call: _Call) -> None:
        try:
            report = await usage_report(call.gateway, call.principal)
        except LimiterUnavailable:
            raise ProxyError(
                503, "usage cannot be read right now; retry shortly", "service_unavailable"
            ) from None
        await _send_json(call.send, 200, msgspec.json.encode(report), call.headers)


def _request_payload(body: dict[str, Any]) -> Any:
    """What of a request the payload log keeps: the messages, prompt or input (redacted later)."""
    for name in ("messages", "prompt", "input"):
        if name in body:
            return body[name]
    return None


def _attribute(record: CallRecord, principal: Principal) -> None:
    record.budgeted = bool(principal.plan.budgets)
    record.api_key_id = principal.key_id
    record.key_prefix = principal.key_prefix
    record.tenant_id = principal.tenant_id
    record.user_id = principal.user_id
    record.tenant_slug = principal.tenant_slug
    record.client_id = principal.client_id


async def _authenticate(gateway: Gateway, key: str | None, record: CallRecord) -> Principal:
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
            _attribute(record, principal)
        raise ProxyError(401, _INVALID_KEY, "invalid_request_error", "invalid_api_key")
    _attribute(record, principal)
    if not principal.tenant_active:
        raise ProxyError(
            403, f"tenant {principal.tenant_slug!r} is suspended", "permission_error", "tenant_suspended"
        )
    if not principal.user_active:
        raise ProxyError(403, "the key's user is disabled", "permission_error", "user_disabled")
    return principal


async def _plain(call: _Call, body: dict[str, Any], endpoint: str, method: Method) -> None:
    """A non-streaming call, with the completion cache when the caller has it enabled."""
    gateway, principal = call.gateway, call.principal
    model = body["model"]
    cache_key = None
    if principal.cache_enabled:
        try:
            gateway.router.resolve(gateway.catalog, principal, model)
        except (ModelNotFound, ModelDenied) as exc:
            raise _refusal(exc, model) from None
        cache_key = gateway.cache.key(f"{endpoint}:{principal.tenant_id or principal.key_id}", body)
        call.record.cache_checked = True
        cached = await gateway.cache.get(cache_key)
        if cached is not None:
            call.record.cached = True
            call.record.latency_ms = call.elapsed_ms()
            hit = [*call.headers, (b"x-portal-cache", b"hit"), (b"x-portal-cost", b"0")]
            if principal.log_prompts:
                call.record.prompt_payload = _request_payload(body)
                call.record.response_payload = cached
            await _send_json(call.send, 200, cached, hit)
            return
    if principal.log_prompts:
        call.record.prompt_payload = _request_payload(body)
    await call.admit(body, completion=endpoint != "embeddings")
    result, deployment = await call.route(lambda a, c, d: method(a)(c, d.target, body))
    usage = result.usage or Usage(
        prompt_tokens=estimate_prompt_tokens(body),
        completion_tokens=math.ceil(_completion_chars(result.body) / 4),
        estimated=True,
    )
    cost = call.bill(deployment, usage)
    if principal.log_prompts and endpoint != "embeddings":
        call.record.response_payload = result.body
    headers = [*call.headers, (b"x-portal-cost", str(cost).encode())]
    if cache_key is not None:
        headers.append((b"x-portal-cache", b"miss"))
    await _send_json(call.send, 200, result.body, headers)
    if cache_key is not None:
        gateway.cache.put(cache_key, model, result.body)


async def _stream(call: _Call, body: dict[str, Any]) -> None:
    """A streaming chat call: relayed frame by frame, billed however it ends."""
    call.record.stream = True
    frames: list[bytes] | None = None
    if call.principal.log_prompts:
        call.record.prompt_payload = _request_payload(body)
        frames = call.record.response_payload = []
    await call.admit(body)
    stream, deployment = await call.route(lambda a, c, d: a.stream_chat(c, d.target, body))
    assert isinstance(stream, ProviderStream)
    await call.send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/event-stream"),
                (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no"),
                *call.headers,
            ],
        }
    )
    cut: asyncio.CancelledError | None = None
    relayed = time.perf_counter()
    try:
        outcome = await _pump(stream, call.send, call.receive, call.record, call.started, frames)
    except asyncio.CancelledError as exc:  # cut by the shutdown: bill what was delivered, then stop
        outcome, cut = "cut", exc
    call.record.upstream_ms += (time.perf_counter() - relayed) * 1000
    usage = stream.usage
    if outcome != "done" or usage is None or (usage.completion_tokens == 0 and stream.delivered_chars > 0):
        prompt = (
            usage.prompt_tokens if usage is not None and usage.prompt_tokens else estimate_prompt_tokens(body)
        )
        usage = Usage(
            prompt_tokens=prompt, completion_tokens=math.ceil(stream.delivered_chars / 4), estimated=True
        )
    call.bill(deployment, usage)
    if cut is not None:
        raise cut


async def _pump(
    stream: ProviderStream,
    send: Send,
    client_receive: Receive,
    record: CallRecord,
    started: float,
    frames: list[bytes] | None = None,
) -> str:
    """Relay the stream to the client; returns ``done``, ``disconnected`` or ``upstream_error``.

    ``frames`` (when the tenant stores payloads) collects the relayed frames, up to a size cap."""

    async def relay() -> str:
        first = True
        try:
            async for frame in stream.events:
                if first:
                    record.ttft_ms = (time.perf_counter() - started) * 1000
                    first = False
                if frames is not None and len(frames) < _MAX_CAPTURED_FRAMES:
                    frames.append(frame)
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
            # Cancelled from outside (e.g. the shutdown grace period ran out): the relay must stop
            # iterating the upstream stream before it can be closed.
            relay_task.cancel()
            await asyncio.gather(relay_task, return_exceptions=True)
        await stream.aclose()
    if outcome == "disconnected":
        record.status_code = 499
        record.error_type = "client_disconnected"
    return outcome
