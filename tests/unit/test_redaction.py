"""Redaction of stored payloads, the payload formatter's size cap, the log formatters, and the ops
settings (log format, redact patterns, metrics token, payload cap)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from portal.config import ConfigError, load_settings
from portal.ops import multiproc
from portal.ops.logs import JsonFormatter, TextFormatter, render_calls
from portal.spend.payloads import PayloadFormatter, answer_text
from portal.spend.records import CallRecord
from portal.spend.redaction import Redactor, luhn_valid
from tests.conftest import TEST_SECRET

R = Redactor()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to bob.smith+tag@mail.example.co.uk today", "write to [REDACTED:email] today"),
        ("key sk-proj-AbCdEfGhIjKlMnOpQrSt123", "key [REDACTED:key]"),
        ("anthropic sk-ant-api03-abcdefghijklmnopqrstuv", "anthropic [REDACTED:key]"),
        ("aws AKIAIOSFODNN7EXAMPLE end", "aws [REDACTED:key] end"),
        ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345", "Authorization: [REDACTED:key]"),
        ("card 4111 1111 1111 1111 exp 12/29", "card [REDACTED:card] exp 12/29"),
        ("card 5500-0000-0000-0004.", "card [REDACTED:card]."),
        ("call +1 (555) 123-4567 now", "call [REDACTED:phone] now"),
        ("office 030 1234 5678", "office [REDACTED:phone]"),
        ("line one\nsk-abcdefghijklmnopqrstu", "line one\n[REDACTED:key]"),
    ],
)
def test_secrets_and_personal_data_are_masked(text: str, expected: str) -> None:
    assert R.text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "order 4111 1111 1111 1112 is not a card (Luhn fails)",
        "on 2024-01-15 10:30 the host 192.168.100.200 answered",
        "epoch 1700000000 and pi 3.14159265358979",
        "risk-management is a word, so is task-oriented",
        "version 1.2.3 and 42 apples",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert R.text(text) == text


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112")


def test_extra_patterns_and_nested_values() -> None:
    redactor = Redactor([r"ACME-\d{4}", r"(?i)project\s+\w+"])
    value = [
        {"role": "user", "content": "ticket ACME-1234 for Project Falcon, mail a@b.io"},
        {"role": "user", "content": [{"type": "text", "text": "sk-abcdefghijklmnopqrstuv"}]},
        {"n": 3, "ok": True},
    ]
    assert redactor.value(value) == [
        {"role": "user", "content": "ticket [REDACTED] for [REDACTED], mail [REDACTED:email]"},
        {"role": "user", "content": [{"type": "text", "text": "[REDACTED:key]"}]},
        {"n": 3, "ok": True},
    ]


def test_payloads_are_redacted_and_capped() -> None:
    formatter = PayloadFormatter(Redactor(), max_chars=120)
    record = CallRecord(request_id="r", created_at=dt.datetime.now(dt.UTC), status_code=200)
    record.prompt_payload = [{"role": "user", "content": "me@example.com " + "x" * 500}]
    record.response_payload = msgspec.json.encode(
        {"choices": [{"message": {"role": "assistant", "content": "call +44 20 7946 0958"}}]}
    )
    prompt, response = formatter.render(record)
    assert prompt is not None
    assert len(prompt) == 120
    assert prompt.endswith(" [truncated]")
    assert "me@example.com" not in prompt
    assert "[REDACTED:email]" in prompt
    assert response == "call [REDACTED:phone]"
    assert PayloadFormatter(Redactor(), max_chars=50_000).max_chars == 10_000


def test_stream_frames_become_the_answer_text() -> None:
    frames = [
        b'data: {"choices":[{"delta":{"role":"assistant","content":"Hel"}}]}\n\n',
        b'data: {"choices":[{"delta":{"content":"lo"}}]}\n\ndata: {"choices":[],"usage":{}}\n\n',
        b"data: [DONE]\n\n",
    ]
    assert answer_text(frames) == "Hello"
    assert answer_text(None) is None
    assert answer_text(b"not json") == "not json"


def _record(**fields: object) -> CallRecord:
    record = CallRecord(
        request_id="req-1",
        created_at=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        status_code=200,
        tenant_slug="team-a",
        key_prefix="sk-abc1",
        client_id="ci",
        model="gpt-4o-mini",
        provider="openai",
        prompt_tokens=11,
        completion_tokens=7,
        cost=Decimal("0.0000123"),
        latency_ms=12.345,
    )
    for name, value in fields.items():
        setattr(record, name, value)
    return record


def test_access_lines_in_json_and_text() -> None:
    lines = render_calls([_record(), _record(request_id="req-2", status_code=429)], as_json=True).split("\n")
    first = json.loads(lines[0])
    assert first["request_id"] == "req-1"
    assert first["tenant"] == "team-a"
    assert first["key_prefix"] == "sk-abc1"
    assert first["status"] == 200
    assert first["latency_ms"] == 12.35
    assert first["cost"] == "0.0000123"
    assert first["ts"].startswith("2026-01-02T03:04:05")
    assert json.loads(lines[1])["status"] == 429
    text = render_calls([_record()], as_json=False)
    assert "portal.access:" in text
    assert "request_id=req-1" in text
    assert "status=200" in text


def test_json_formatter_puts_extra_fields_at_the_top() -> None:
    logger = logging.getLogger("portal.test")
    record = logger.makeRecord("portal.test", logging.ERROR, __file__, 1, "failed %s", ("x",), None)
    record.request_id = "req-9"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["msg"] == "failed x"
    assert entry["request_id"] == "req-9"
    assert entry["level"] == "error"
    assert "request_id=req-9" in TextFormatter().format(record)


def test_ops_settings_are_validated() -> None:
    base = {"PORTAL_SECRET_KEY": TEST_SECRET}
    settings = load_settings({**base, "PORTAL_REDACT_PATTERNS": '["ACME-\\\\d+", "secret\\\\w+"]'})
    assert settings.redact_patterns == ["ACME-\\d+", "secret\\w+"]
    lines = load_settings({**base, "PORTAL_REDACT_PATTERNS": "ACME-\\d+\nfoo,bar"})
    assert lines.redact_patterns == ["ACME-\\d+", "foo,bar"]
    assert load_settings(base).log_format == "json"
    with pytest.raises(ConfigError) as bad:
        load_settings(
            {
                **base,
                "PORTAL_REDACT_PATTERNS": "([unclosed",
                "PORTAL_LOG_FORMAT": "xml",
                "PORTAL_METRICS_TOKEN": "short",
                "PORTAL_PAYLOAD_LOG_MAX_CHARS": "20000",
            }
        )
    message = str(bad.value)
    for part in ("PORTAL_REDACT_PATTERNS", "PORTAL_LOG_FORMAT", "PORTAL_METRICS_TOKEN", "MAX_CHARS"):
        assert part in message


def test_multiproc_dir_is_emptied_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "counter_12345.db").write_bytes(b"stale")
    (tmp_path / "keep.txt").write_text("not ours")
    monkeypatch.setenv(multiproc.ENV, str(tmp_path))
    assert multiproc.prepare(2) is None
    assert not (tmp_path / "counter_12345.db").exists()
    assert (tmp_path / "keep.txt").exists()
    monkeypatch.delenv(multiproc.ENV)
    assert multiproc.prepare(1) is None
    assert multiproc.ENV not in os.environ
    created = multiproc.prepare(3)
    try:
        assert created is not None
        assert created.is_dir()
        assert os.environ[multiproc.ENV] == str(created)
    finally:
        multiproc.cleanup(created)
    assert not created.exists()
    assert multiproc.ENV not in os.environ


def test_lines_logged_during_a_call_carry_its_request_id() -> None:
    import contextvars
    import io

    from portal.ops.logs import REQUEST_ID, RequestIdFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("portal.test.request_id")
    logger.addHandler(handler)
    logger.propagate = False
    try:

        def during_call() -> None:
            REQUEST_ID.set("req-42")
            try:
                raise RuntimeError("upstream exploded")
            except RuntimeError:
                logger.exception("proxy: unexpected error")

        contextvars.copy_context().run(during_call)
        logger.error("outside any call")
    finally:
        logger.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["request_id"] == "req-42"
    assert "RuntimeError: upstream exploded" in inside["exc"]
    assert "request_id" not in outside
