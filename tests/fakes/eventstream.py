"""Hand-rolled encoder for the AWS binary event stream (``application/vnd.amazon.eventstream``).

Message: prelude (total length, headers length, CRC32 of both), string headers, payload, CRC32 of all
preceding bytes. Decoded by botocore's ``EventStreamBuffer`` in the tests to prove the format.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import msgspec

__all__ = ["encode_event", "encode_exception", "encode_message"]

_STRING = 7


def _headers(headers: dict[str, str]) -> bytes:
    out = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        out += (
            struct.pack(">B", len(raw_name))
            + raw_name
            + struct.pack(">BH", _STRING, len(raw_value))
            + raw_value
        )
    return out


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    raw_headers = _headers(headers)
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + raw_headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def encode_event(event_type: str, payload: dict[str, Any]) -> bytes:
    """A Converse stream event; like AWS, the payload carries a ``p`` padding field."""
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(
        headers, msgspec.json.encode(payload | {"p": "abcdefghijklmnopqrstuvwxyzABCDEF"[: len(event_type)]})
    )


def encode_exception(exception_type: str, message: str) -> bytes:
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_message(headers, msgspec.json.encode({"message": message}))
