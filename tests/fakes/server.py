"""Machinery shared by the fake upstreams: scripted behaviours, a request log, a threaded uvicorn server."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote

import msgspec
import uvicorn

from portal.proxy.providers.base import Target

__all__ = [
    "Behaviour",
    "FakeUpstream",
    "Recorded",
    "Reply",
    "Wire",
    "json_reply",
    "split_text",
]

DEFAULT_TEXT = "Hello from the fake upstream."


@dataclass
class Behaviour:
    """How the fake answers one request. Queue several with :meth:`FakeUpstream.script`."""

    status: int = 200
    message: str | None = None
    error_type: str | None = None
    retry_after: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    text: str = DEFAULT_TEXT
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    chunks: int = 3
    chunk_delay: float = 0.0
    prompt_tokens: int = 11
    completion_tokens: int = 7
    cached_tokens: int = 0
    omit_usage: bool = False
    truncated: bool = False
    stream_error: str | None = None
    raw: bytes | None = None


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any


@dataclass
class Reply:
    status: int
    body: bytes | list[bytes]
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_reply(status: int, value: Any, headers: list[tuple[str, str]] | None = None) -> Reply:
    return Reply(status, msgspec.json.encode(value), headers=headers or [])


def split_text(text: str, pieces: int) -> list[str]:
    """``text`` cut into at most ``pieces`` non-empty parts that join back to it."""
    pieces = max(1, min(pieces, len(text) or 1))
    size = -(-len(text) // pieces) or 1
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class Wire(Protocol):
    """One provider's wire format, as the fake server speaks it."""

    name: str
    api_key: str

    def check_auth(self, request: Recorded) -> Reply | None: ...

    def error(self, request: Recorded, behaviour: Behaviour) -> Reply: ...

    def handle(self, request: Recorded, behaviour: Behaviour) -> Reply: ...

    def target(self, base_url: str, model: str | None) -> Target: ...


class FakeUpstream:
    """A fake provider on ``127.0.0.1``: scripted answers, a log of what it received.

    ``script(*behaviours)`` queues answers used in order (then ``default``), ``fail(status)`` queues
    provider-shaped errors, ``requests``/``last`` show what arrived, ``target()`` builds a
    :class:`Target` pointing here with valid credentials, ``reset()`` clears everything.
    """

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.default = Behaviour()
        self.requests: list[Recorded] = []
        self._queue: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.base_url = ""

    @property
    def api_key(self) -> str:
        return self.wire.api_key

    @property
    def last(self) -> Recorded:
        with self._lock:
            return self.requests[-1]

    def script(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self._queue.extend(behaviours)

    def fail(
        self,
        status: int,
        message: str | None = None,
        *,
        times: int = 1,
        retry_after: float | None = None,
        error_type: str | None = None,
    ) -> None:
        failure = Behaviour(status=status, message=message, retry_after=retry_after, error_type=error_type)
        self.script(*(dataclasses.replace(failure) for _ in range(times)))

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests.clear()
        self.default = Behaviour()

    def target(self, model: str | None = None, **overrides: Any) -> Target:
        return dataclasses.replace(self.wire.target(self.base_url, model), **overrides)

    def _next(self) -> Behaviour:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        try:
            parsed: Any = msgspec.json.decode(body) if body else None
        except msgspec.DecodeError:
            parsed = None
        raw_path = scope.get("raw_path") or scope["path"].encode()
        request = Recorded(
            method=scope["method"],
            path=unquote(raw_path.decode("latin-1")),
            raw_path=raw_path.decode("latin-1"),
            query=dict(parse_qsl(scope["query_string"].decode("latin-1"))),
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
            body=body,
            json=parsed,
        )
        with self._lock:
            self.requests.append(request)
        reply = self.wire.check_auth(request)
        behaviour = self.default
        if reply is None:
            behaviour = self._next()
            if behaviour.delay:
                await asyncio.sleep(behaviour.delay)
            if behaviour.status >= 400:
                reply = self.wire.error(request, behaviour)
            elif behaviour.raw is not None:
                reply = Reply(behaviour.status, behaviour.raw)
            else:
                reply = self.wire.handle(request, behaviour)
        await self._send(send, reply, behaviour)

    async def _send(self, send: Any, reply: Reply, behaviour: Behaviour) -> None:
        headers = [(b"content-type", reply.content_type.encode())]
        headers += [(k.encode(), v.encode()) for k, v in reply.headers]
        headers += [(k.encode(), v.encode()) for k, v in behaviour.headers.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        if isinstance(reply.body, bytes):
            await send({"type": "http.response.body", "body": reply.body})
            return
        for index, chunk in enumerate(reply.body):
            if index and behaviour.chunk_delay:
                await asyncio.sleep(behaviour.chunk_delay)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    def start(self) -> FakeUpstream:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            self,
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            ws="none",
            loop="asyncio",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._socket = sock
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"fake-{self.wire.name}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"fake {self.wire.name} server did not start")
            time.sleep(0.005)
        port = sock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
