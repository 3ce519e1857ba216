"""A fast fake OpenAI upstream for benchmarks: raw asyncio Protocols on uvloop, HTTP/1.1 keep-alive.

Endpoints:

* ``POST /v1/chat/completions``: a fixed small ``chat.completion`` (usage 12/20/32); with
  ``"stream": true`` in the JSON body, a ``text/event-stream`` of 20 content chunks, one usage
  chunk (``choices: []``) and ``data: [DONE]``, sent with chunked transfer encoding on a
  keep-alive connection.
* ``GET /v1/models``: one model.
* ``GET /_bench/stats``: ``{"requests": N, "delay_ms": D}`` (completions answered so far).
* ``POST /_bench/delay``: body ``{"delay_ms": D}`` sets the delay applied before each completion.

Every response is pre-built bytes; the only per-request work is parsing the request head, looking
for ``"stream"`` in the body and one ``transport.write``. A delay is kept precise (well under a
millisecond) with a Linux ``timerfd`` instead of the event loop's millisecond timers, so that the
added latency the gateway is measured against is not noise from the upstream's timer.

Run: ``python benchmarks/upstream.py --port 0 --delay-ms 0``; the first line on stdout is
``READY port=<port>``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import heapq
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any, cast

__all__ = ["main"]

MODEL = "gpt-4o-mini"
CREATED = 1_700_000_000
USAGE = {"prompt_tokens": 12, "completion_tokens": 20, "total_tokens": 32}
CONTENT_CHUNKS = 20
MAX_HEAD = 64 * 1024
MAX_BODY = 8 * 1024 * 1024


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _fixed_response(status: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (
        b"HTTP/1.1 "
        + status.encode()
        + b"\r\nContent-Type: "
        + content_type
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def _completion_body() -> bytes:
    return _json(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello! This is a short benchmark reply."},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
            "system_fingerprint": "fp_bench",
        }
    )


def _stream_events() -> list[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": MODEL,
            "system_fingerprint": "fp_bench",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    events: list[dict[str, Any]] = []
    for i in range(CONTENT_CHUNKS):
        delta: dict[str, Any] = {"content": f"tok{i} "}
        if i == 0:
            delta = {"role": "assistant", "content": "tok0 "}
        events.append(chunk(delta, "stop" if i == CONTENT_CHUNKS - 1 else None))
    usage_chunk = chunk({}, None)
    usage_chunk["choices"] = []
    usage_chunk["usage"] = USAGE
    events.append(usage_chunk)
    lines = [b"data: " + _json(e) + b"\n\n" for e in events]
    lines.append(b"data: [DONE]\n\n")
    return lines


def _chunked_stream_response() -> bytes:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
        b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    parts = [head]
    for event in _stream_events():
        parts.append(f"{len(event):x}\r\n".encode() + event + b"\r\n")
    parts.append(b"0\r\n\r\n")
    return b"".join(parts)


COMPLETION = _fixed_response("200 OK", _completion_body())
STREAM = _chunked_stream_response()
MODELS = _fixed_response(
    "200 OK", _json({"object": "list", "data": [{"id": MODEL, "object": "model", "created": CREATED}]})
)
NOT_FOUND = _fixed_response("404 Not Found", _json({"error": {"message": "not found", "type": "bench"}}))
BAD_REQUEST = _fixed_response("400 Bad Request", _json({"error": {"message": "bad request"}}))
TOO_LARGE = _fixed_response("413 Content Too Large", _json({"error": {"message": "too large"}}))


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _Timers:
    """Precise one-shot callbacks: a heap of deadlines behind one ``timerfd`` (Linux), else call_later."""

    _CLOCK_MONOTONIC = 1
    _TFD_NONBLOCK = 0o4000
    _TFD_CLOEXEC = 0o2000000
    _TFD_TIMER_ABSTIME = 1

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0
        self._armed_at = 0
        self._fd = -1
        self._libc: Any = None
        if sys.platform.startswith("linux"):
            try:
                self._open_timerfd()
            except (OSError, AttributeError):
                self._fd = -1

    def _open_timerfd(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fd = libc.timerfd_create(self._CLOCK_MONOTONIC, self._TFD_NONBLOCK | self._TFD_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self._libc = libc
        self._fd = fd
        self._loop.add_reader(fd, self._fire)

    @property
    def precise(self) -> bool:
        return self._fd >= 0

    def call_at_ns(self, deadline_ns: int, callback: Callable[[], None]) -> None:
        """Run ``callback`` at ``time.monotonic_ns() >= deadline_ns``."""
        if self._fd < 0:
            self._loop.call_later(max(0.0, (deadline_ns - time.monotonic_ns()) / 1e9), callback)
            return
        self._seq += 1
        heapq.heappush(self._heap, (deadline_ns, self._seq, callback))
        if self._armed_at == 0 or deadline_ns < self._armed_at:
            self._arm(deadline_ns)

    def _arm(self, deadline_ns: int) -> None:
        spec = _Itimerspec()
        spec.it_value.tv_sec, spec.it_value.tv_nsec = divmod(max(deadline_ns, 1), 1_000_000_000)
        if self._libc.timerfd_settime(self._fd, self._TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")
        self._armed_at = deadline_ns

    def _fire(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._fd, 8)
        self._armed_at = 0
        now = time.monotonic_ns()
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, callback = heapq.heappop(heap)
            callback()
        if heap:
            self._arm(heap[0][0])


class _State:
    def __init__(self, delay_ms: float, timers: _Timers) -> None:
        self.delay_ns = int(delay_ms * 1_000_000)
        self.requests = 0
        self.timers = timers


class UpstreamProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection: parse a request, answer, repeat; requests are answered in order."""

    __slots__ = ("_buf", "_busy", "_close_after", "_state", "_transport")

    def __init__(self, state: _State) -> None:
        self._state = state
        self._buf = b""
        self._busy = False
        self._close_after = False
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they implement its interface.
        self._transport = cast("asyncio.Transport", transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buf = self._buf + data if self._buf else data
        if not self._busy:
            self._process()

    def _process(self) -> None:
        while self._buf and not self._busy and self._transport is not None:
            parsed = self._parse()
            if parsed is None:
                return
            method, path, body = parsed
            self._dispatch(method, path, body)

    def _parse(self) -> tuple[bytes, bytes, bytes] | None:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD:
                self._fail(BAD_REQUEST)
            return None
        head = buf[:end].split(b"\r\n")
        request_line = head[0].split(b" ")
        if len(request_line) != 3:
            self._fail(BAD_REQUEST)
            return None
        method, target, version = request_line
        length = 0
        chunked = False
        close = version == b"HTTP/1.0"
        for line in head[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    self._fail(BAD_REQUEST)
                    return None
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                lowered = value.strip().lower()
                if lowered == b"close":
                    close = True
                elif lowered == b"keep-alive":
                    close = False
        start = end + 4
        if chunked:
            decoded = self._dechunk(buf, start)
            if decoded is None:
                return None
            body, consumed = decoded
        else:
            if length > MAX_BODY:
                self._fail(TOO_LARGE)
                return None
            if len(buf) - start < length:
                return None
            body = buf[start : start + length]
            consumed = start + length
        self._buf = buf[consumed:]
        self._close_after = close
        return method, target.split(b"?", 1)[0], body

    def _dechunk(self, buf: bytes, pos: int) -> tuple[bytes, int] | None:
        parts: list[bytes] = []
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            try:
                size = int(buf[pos:eol].split(b";", 1)[0], 16)
            except ValueError:
                self._fail(BAD_REQUEST)
                return None
            pos = eol + 2
            if size == 0:
                # Optional trailers end with an empty line.
                trailer_end = buf.find(b"\r\n\r\n", pos - 2)
                if trailer_end < 0:
                    return None
                return b"".join(parts), trailer_end + 4
            if len(buf) < pos + size + 2:
                return None
            parts.append(buf[pos : pos + size])
            pos += size + 2

    def _fail(self, response: bytes) -> None:
        self._buf = b""
        if self._transport is not None:
            self._transport.write(response)
            self._transport.close()

    def _dispatch(self, method: bytes, path: bytes, body: bytes) -> None:
        state = self._state
        if method == b"POST" and path == b"/v1/chat/completions":
            state.requests += 1
            response = STREAM if _wants_stream(body) else COMPLETION
            if state.delay_ns > 0:
                self._busy = True
                state.timers.call_at_ns(
                    time.monotonic_ns() + state.delay_ns, lambda: self._send_later(response)
                )
                return
            self._send(response)
        elif method == b"GET" and path == b"/v1/models":
            self._send(MODELS)
        elif method == b"GET" and path == b"/_bench/stats":
            stats = {
                "requests": state.requests,
                "delay_ms": state.delay_ns / 1e6,
                "precise_timer": state.timers.precise,
            }
            self._send(_fixed_response("200 OK", _json(stats)))
        elif method == b"POST" and path == b"/_bench/delay":
            try:
                state.delay_ns = int(float(json.loads(body)["delay_ms"]) * 1_000_000)
            except (ValueError, KeyError, TypeError):
                self._send(BAD_REQUEST)
                return
            self._send(_fixed_response("200 OK", _json({"delay_ms": state.delay_ns / 1e6})))
        else:
            self._send(NOT_FOUND)

    def _send(self, response: bytes) -> None:
        transport = self._transport
        if transport is None:
            return
        transport.write(response)
        if self._close_after:
            self._buf = b""
            transport.close()

    def _send_later(self, response: bytes) -> None:
        self._busy = False
        self._send(response)
        if self._buf:
            self._process()


def _wants_stream(body: bytes) -> bool:
    if b'"stream"' not in body:
        return False
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("stream") is True


async def _serve(host: str, port: int, delay_ms: float) -> None:
    loop = asyncio.get_running_loop()
    state = _State(delay_ms, _Timers(loop))
    server = await loop.create_server(lambda: UpstreamProtocol(state), host, port, backlog=4096)
    bound = server.sockets[0].getsockname()[1]
    print(f"READY port={bound} precise_timer={state.timers.precise}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    """Parse the options and serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="fixed delay before each completion")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        print("upstream: uvloop is not installed; falling back to the asyncio loop", file=sys.stderr)
        asyncio.run(_serve(args.host, args.port, args.delay_ms))
    else:
        uvloop.run(_serve(args.host, args.port, args.delay_ms))


if __name__ == "__main__":
    main()
