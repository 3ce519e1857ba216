"""The shared aiohttp upstream client: keep-alive reuse, released streams, failures as UpstreamError."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from portal.proxy.providers import get_adapter
from portal.proxy.providers.base import Target, UpstreamClient, UpstreamError, Usage
from tests.fakes import Behaviour, FakeUpstream

from .helpers import DONE, drain, read_into

CHAT: dict[str, Any] = {"model": "alias", "messages": [{"role": "user", "content": "Say hello"}]}
STREAM = CHAT | {"stream": True}


class ConnectionCounter:
    """A TCP relay in front of a fake upstream that counts the connections made through it."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.accepted = 0
        self.finished = 0
        self.one_finished = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> ConnectionCounter:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.create_task(self._relay(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.close()
            self.finished += 1
            self.one_finished.set()

    def target(self, fake: FakeUpstream, **overrides: Any) -> Target:
        return fake.target(api_base=f"http://127.0.0.1:{self.port}/v1", **overrides)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        if writer.can_write_eof() and not writer.is_closing():
            with contextlib.suppress(OSError):
                writer.write_eof()


@pytest.fixture
async def counter(fake_openai: FakeUpstream) -> AsyncIterator[ConnectionCounter]:
    port = int(fake_openai.base_url.rsplit(":", 1)[1])
    async with ConnectionCounter(port) as relay:
        yield relay


@pytest.fixture
async def one_connection() -> AsyncIterator[UpstreamClient]:
    """A client allowed a single connection: one that is never released blocks every later call."""
    client = UpstreamClient(limit=1)
    yield client
    await client.aclose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_client_is_built_without_an_event_loop() -> None:
    client = UpstreamClient(limit=10)
    assert "not started" in repr(client)
    assert not client.closed


async def test_start_aclose_and_use_after_close() -> None:
    client = UpstreamClient()
    await client.start()
    assert "open" in repr(client)
    await client.aclose()
    await client.aclose()
    assert client.closed
    with pytest.raises(RuntimeError, match="closed"):
        await client.post(Target("openai", "m"), "http://127.0.0.1:9/", {}, b"")


async def test_connection_is_reused_across_calls(
    fake_openai: FakeUpstream, counter: ConnectionCounter, upstream_http: UpstreamClient
) -> None:
    adapter = get_adapter("openai")
    target = counter.target(fake_openai)
    for _ in range(3):
        assert (await adapter.chat(upstream_http, target, CHAT)).usage == Usage(11, 7)
    drained = await drain(await adapter.stream_chat(upstream_http, target, STREAM))
    assert drained.frames[-1] == DONE
    await adapter.embeddings(upstream_http, counter.target(fake_openai), {"input": "x"})
    assert len(fake_openai.requests) == 5
    assert counter.accepted == 1
    assert counter.finished == 0


async def test_stream_closed_early_releases_its_connection(
    fake_openai: FakeUpstream, counter: ConnectionCounter, one_connection: UpstreamClient
) -> None:
    fake_openai.script(Behaviour(text="x" * 50, chunks=10, chunk_delay=0.05))
    adapter = get_adapter("openai")
    target = counter.target(fake_openai, timeout_s=5.0)
    stream = await adapter.stream_chat(one_connection, target, STREAM)
    frames = 0
    async for _frame in stream.events:
        frames += 1
        if frames == 2:
            break
    await stream.aclose()

    await asyncio.wait_for(counter.one_finished.wait(), 5)
    assert counter.finished == 1
    result = await asyncio.wait_for(adapter.chat(one_connection, target, CHAT), 5)
    assert result.usage == Usage(11, 7)
    assert counter.accepted == 2


async def test_stream_read_to_the_end_goes_back_to_the_pool(
    fake_openai: FakeUpstream, counter: ConnectionCounter, one_connection: UpstreamClient
) -> None:
    adapter = get_adapter("openai")
    target = counter.target(fake_openai, timeout_s=5.0)
    for _ in range(2):
        stream = await adapter.stream_chat(one_connection, target, STREAM)
        assert (await drain(stream)).frames[-1] == DONE
    await asyncio.wait_for(adapter.chat(one_connection, target, CHAT), 5)
    assert counter.accepted == 1


async def test_error_answer_releases_its_connection(
    fake_openai: FakeUpstream, counter: ConnectionCounter, one_connection: UpstreamClient
) -> None:
    fake_openai.fail(500, "boom")
    fake_openai.fail(503, "busy")
    adapter = get_adapter("openai")
    target = counter.target(fake_openai, timeout_s=5.0)
    with pytest.raises(UpstreamError, match="boom"):
        await adapter.chat(one_connection, target, CHAT)
    with pytest.raises(UpstreamError, match="busy"):
        await adapter.stream_chat(one_connection, target, STREAM)
    await asyncio.wait_for(adapter.chat(one_connection, target, CHAT), 5)
    assert counter.accepted == 1


@pytest.mark.parametrize("streaming", [False, True])
async def test_connection_refused_is_retryable_502(upstream_http: UpstreamClient, streaming: bool) -> None:
    port = _free_port()
    target = Target("openai", "gpt-4o-mini", api_base=f"http://127.0.0.1:{port}/v1", api_key="k")
    adapter = get_adapter("openai")
    call = (
        adapter.stream_chat(upstream_http, target, STREAM)
        if streaming
        else adapter.chat(upstream_http, target, CHAT)
    )
    with pytest.raises(UpstreamError) as caught:
        await call
    assert (caught.value.status, caught.value.retryable) == (502, True)
    assert caught.value.message.startswith("upstream connection failed: ")


@pytest.mark.parametrize("streaming", [False, True])
async def test_timeout_before_the_answer_is_504(
    fake_openai: FakeUpstream, upstream_http: UpstreamClient, streaming: bool
) -> None:
    fake_openai.script(Behaviour(delay=1.0))
    target = fake_openai.target(timeout_s=0.2)
    adapter = get_adapter("openai")
    call = (
        adapter.stream_chat(upstream_http, target, STREAM)
        if streaming
        else adapter.chat(upstream_http, target, CHAT)
    )
    with pytest.raises(UpstreamError) as caught:
        await call
    error = caught.value
    assert (error.status, error.retryable, error.error_type) == (504, True, "timeout")
    assert error.message.startswith("upstream timed out (")


async def test_stalled_stream_times_out_with_504(
    fake_openai: FakeUpstream, upstream_http: UpstreamClient
) -> None:
    fake_openai.script(Behaviour(text="abcdef", chunks=3, chunk_delay=1.0))
    target = fake_openai.target(timeout_s=0.3)
    stream = await get_adapter("openai").stream_chat(upstream_http, target, STREAM)
    frames: list[bytes] = []
    with pytest.raises(UpstreamError) as caught:
        await read_into(stream, frames)
    await stream.aclose()
    assert (caught.value.status, caught.value.retryable, caught.value.error_type) == (504, True, "timeout")
    assert len(frames) == 1


async def test_connection_cut_mid_stream_is_retryable_502(upstream_http: UpstreamClient) -> None:
    first = b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            + f"{len(first):x}\r\n".encode()
            + first
            + b"\r\n"
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(cut, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        target = Target("openai", "m", api_base=f"http://127.0.0.1:{port}/v1", api_key="k")
        stream = await get_adapter("openai").stream_chat(upstream_http, target, STREAM)
        frames: list[bytes] = []
        with pytest.raises(UpstreamError) as caught:
            await read_into(stream, frames)
        await stream.aclose()
    finally:
        server.close()
        await server.wait_closed()
    assert (caught.value.status, caught.value.retryable) == (502, True)
    assert frames == [first]
    assert stream.delivered_chars == 3


async def test_redirects_are_not_followed(fake_openai: FakeUpstream, upstream_http: UpstreamClient) -> None:
    elsewhere = f"{fake_openai.base_url}/v1/models"
    fake_openai.script(Behaviour(status=307, raw=b"moved", headers={"Location": elsewhere}))
    target = fake_openai.target()
    url = f"{fake_openai.base_url}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {fake_openai.api_key}"}
    response = await upstream_http.post(target, url, headers, b"{}")
    assert (response.status, response.text, response.headers["location"]) == (307, "moved", elsewhere)
    assert len(fake_openai.requests) == 1
