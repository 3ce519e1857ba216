"""Server-sent events: parsing an upstream byte stream into events, and framing OpenAI SSE output."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from portal.proxy.providers.base import ProviderStream

__all__ = ["DONE", "frame", "iter_sse", "iter_sse_batches", "new_stream"]

DONE = b"data: [DONE]\n\n"


def frame(data: bytes) -> bytes:
    """One OpenAI SSE frame carrying ``data``."""
    return b"data: " + data + b"\n\n"


def _parse_block(block: bytes) -> tuple[bytes, bytes] | None:
    if block.startswith(b"data: ") and b"\n" not in block:
        return b"", block[6:]
    event = b""
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value
    if not data and not event:
        return None
    return event, b"\n".join(data)


async def iter_sse(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[bytes, bytes]]:
    """Yield ``(event_name, data)`` for each SSE event; ``event_name`` is ``b""`` when not given."""
    async for batch in iter_sse_batches(chunks):
        for event in batch:
            yield event


async def iter_sse_batches(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[tuple[bytes, bytes]]]:
    """Like :func:`iter_sse`, but every complete event of one network read at once, so a relay can
    forward them to its client in one write."""
    buffer = b""
    crlf = False
    async for chunk in chunks:
        buffer = buffer + chunk if buffer else chunk
        if crlf or b"\r" in chunk:
            crlf = True
            buffer = buffer.replace(b"\r\n", b"\n")
        start = 0
        batch: list[tuple[bytes, bytes]] = []
        while (end := buffer.find(b"\n\n", start)) >= 0:
            parsed = _parse_block(buffer[start:end])
            start = end + 2
            if parsed is not None:
                batch.append(parsed)
        buffer = buffer[start:]
        if batch:
            yield batch
    rest = buffer.strip()
    if rest:
        parsed = _parse_block(rest)
        if parsed is not None:
            yield [parsed]


class _NoEvents:
    def __aiter__(self) -> _NoEvents:
        return self

    async def __anext__(self) -> bytes:
        raise StopAsyncIteration


def new_stream(
    relay: Callable[[ProviderStream], AsyncIterator[bytes]], *closers: Callable[[], Any]
) -> ProviderStream:
    """A :class:`ProviderStream` whose events come from ``relay(stream)``; the relay updates its usage."""
    stream = ProviderStream(events=_NoEvents())
    events = relay(stream)
    stream.events = events
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        stream.closers.append(aclose)
    stream.closers.extend(closers)
    return stream
