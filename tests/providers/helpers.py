"""Helpers for the provider tests: draining a ProviderStream and reading its OpenAI chunks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from portal.proxy.providers.base import ProviderStream

DONE = b"data: [DONE]\n\n"


@dataclass
class Drained:
    frames: list[bytes]
    chunks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(
            choice["delta"].get("content") or "" for chunk in self.chunks for choice in chunk["choices"]
        )

    @property
    def finish_reasons(self) -> list[str]:
        return [
            c["finish_reason"] for chunk in self.chunks for c in chunk["choices"] if c.get("finish_reason")
        ]

    @property
    def usage_chunks(self) -> list[dict[str, Any]]:
        return [chunk for chunk in self.chunks if chunk.get("usage") and not chunk["choices"]]

    def tool_calls(self) -> dict[int, dict[str, str]]:
        """Tool calls assembled from their streamed deltas, by index."""
        calls: dict[int, dict[str, str]] = {}
        for chunk in self.chunks:
            for choice in chunk["choices"]:
                for delta in choice["delta"].get("tool_calls") or ():
                    call = calls.setdefault(delta["index"], {"id": "", "name": "", "arguments": ""})
                    call["id"] = delta.get("id") or call["id"]
                    function = delta.get("function") or {}
                    call["name"] = function.get("name") or call["name"]
                    call["arguments"] += function.get("arguments") or ""
        return calls


def split_frames(item: bytes) -> list[bytes]:
    """The SSE frames in one yielded item (an adapter may yield several complete frames at once)."""
    assert item.startswith(b"data: "), item
    assert item.endswith(b"\n\n"), item
    return [part + b"\n\n" for part in item[:-2].split(b"\n\n")]


async def drain(stream: ProviderStream) -> Drained:
    """Read every frame, check each is a complete SSE data frame, and parse the JSON ones."""
    drained = Drained(frames=[])
    try:
        async for item in stream.events:
            for frame in split_frames(item):
                assert frame.startswith(b"data: "), frame
                drained.frames.append(frame)
                if frame != DONE:
                    drained.chunks.append(msgspec.json.decode(frame[6:-2]))
    finally:
        await stream.aclose()
    return drained


async def read_into(stream: ProviderStream, sink: list[bytes]) -> None:
    """Append every frame to ``sink`` (which keeps what arrived if iterating raises)."""
    async for item in stream.events:
        sink.extend(split_frames(item))


def json_of(body: bytes) -> Any:
    return msgspec.json.decode(body)
