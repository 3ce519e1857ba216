"""Prompt and response logging for tenants that turned it on (``log_prompts``): what is stored, and how.

The proxy only keeps references (the request's messages, prompt or input; the upstream's answer bytes
or the relayed SSE frames) on the call record. The batched writer, off the request path, turns them
into text here: the request as JSON, the answer's text (message contents, or the stream's deltas),
both redacted (:mod:`portal.spend.redaction`) and cut to ``max_chars``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from portal.spend.records import CallRecord
from portal.spend.redaction import Redactor

__all__ = ["COLUMN_CHARS", "PayloadFormatter"]

COLUMN_CHARS = 10_000
"""Size of the ``request_logs.prompt`` and ``response`` columns."""
_MARK = " [truncated]"


class _Text(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    message: _Text | None = None
    delta: _Text | None = None
    text: str | None = None


class _Answer(msgspec.Struct):
    choices: list[_Choice] = []


_answer = msgspec.json.Decoder(_Answer)


def _choice_text(choice: _Choice) -> str:
    part = choice.message or choice.delta
    return (part.content if part is not None else None) or choice.text or ""


def answer_text(payload: Any) -> str | None:
    """The text of a stored answer: JSON bytes of a completion, or a list of SSE frames."""
    if isinstance(payload, bytes):
        try:
            return "".join(_choice_text(c) for c in _answer.decode(payload).choices)
        except msgspec.DecodeError:
            return payload.decode("utf-8", "replace")
    if isinstance(payload, list):
        parts: list[str] = []
        for frame in payload:
            for line in bytes(frame).split(b"\n"):
                if not line.startswith(b"data: ") or line == b"data: [DONE]":
                    continue
                try:
                    parts.extend(_choice_text(c) for c in _answer.decode(line[6:]).choices)
                except msgspec.DecodeError:
                    continue
        return "".join(parts)
    if isinstance(payload, str):
        return payload
    return None


class PayloadFormatter:
    """Redacts and caps a record's payloads into the two text columns."""

    def __init__(self, redactor: Redactor, max_chars: int = COLUMN_CHARS) -> None:
        self.redactor = redactor
        self.max_chars = min(max_chars, COLUMN_CHARS)

    def _cap(self, text: str) -> str:
        if len(text) <= self.max_chars:
            return text
        return text[: max(0, self.max_chars - len(_MARK))] + _MARK

    def prompt(self, payload: Any) -> str | None:
        """The request part as JSON text (a bare string prompt as itself), redacted and capped."""
        if payload is None:
            return None
        clean = self.redactor.value(payload)
        text = clean if isinstance(clean, str) else msgspec.json.encode(clean).decode()
        return self._cap(text)

    def response(self, payload: Any) -> str | None:
        """The answer's text, redacted and capped."""
        text = answer_text(payload)
        return None if text is None else self._cap(self.redactor.text(text))

    def render(self, record: CallRecord) -> tuple[str | None, str | None]:
        """(prompt, response) column values for ``record``."""
        return self.prompt(record.prompt_payload), self.response(record.response_payload)
