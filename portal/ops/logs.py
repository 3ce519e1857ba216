"""Logging: JSON lines or plain text (``PORTAL_LOG_FORMAT``), the level, and the access log.

:func:`logging_config` is the ``dictConfig`` the server applies in every worker (uvicorn's
``log_config``): one stderr handler on the root logger, uvicorn's loggers propagating to it. A log
call's ``extra`` fields become top-level JSON fields (or ``key=value`` pairs in text). Every line
logged while the proxy handles a call (or by a task it started) carries that call's ``request_id``
(:data:`REQUEST_ID`, added by :class:`RequestIdFilter`).

The access log (logger ``portal.access``, ``PORTAL_ACCESS_LOG``) writes one line per proxied call,
from the batched writer's loop, never on the request path: request id, tenant, key prefix (never the
key), client, model, provider, status, latency, tokens and cost. For speed up to 64 calls share ONE
log record whose message is their lines, already rendered in the configured format (a log record
per call cost 29 us of CPU each; this costs about 5 us per call); its handler writes the message
as is.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

import msgspec

from portal.spend.records import CallRecord

__all__ = [
    "ACCESS_LOGGER",
    "REQUEST_ID",
    "JsonFormatter",
    "RequestIdFilter",
    "TextFormatter",
    "access_fields",
    "log_calls",
    "logging_config",
    "render_calls",
]

ACCESS_LOGGER = "portal.access"
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName", "color_message"}
)
_access = logging.getLogger(ACCESS_LOGGER)
_LINES_PER_RECORD = 64
_encoder = msgspec.json.Encoder()
REQUEST_ID: ContextVar[str | None] = ContextVar("portal_request_id", default=None)
"""The id of the proxied call being handled (set by the proxy at the start of each call)."""


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to records logged while a proxied call is being handled."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            request_id = REQUEST_ID.get()
            if request_id is not None:
                record.request_id = request_id
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, the extra fields, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return msgspec.json.encode(entry, enc_hook=str).decode()


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...`` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        extras = _extras(record)
        if extras:
            text += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return text


def logging_config(level: str, fmt: str) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` document for ``level`` and ``fmt`` (``json`` or ``text``)."""
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    stderr = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "portal": {"()": f"{formatter.__module__}.{formatter.__qualname__}"},
            "lines": {"format": "%(message)s"},
        },
        "filters": {"request_id": {"()": f"{RequestIdFilter.__module__}.{RequestIdFilter.__qualname__}"}},
        "handlers": {
            "stderr": {**stderr, "formatter": "portal", "filters": ["request_id"]},
            "access": {**stderr, "formatter": "lines"},
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            name: {"handlers": [], "propagate": True, "level": level.upper()}
            for name in ("uvicorn", "uvicorn.error", "litestar")
        }
        | {
            "uvicorn.access": {"handlers": [], "propagate": False},  # portal.access replaces it
            "httpx": {"level": "WARNING"},
            ACCESS_LOGGER: {"handlers": ["access"], "propagate": False, "level": level.upper()},
        },
    }


def access_fields(r: CallRecord) -> dict[str, Any]:
    """The access log fields of one call (the key's display prefix only, never the key)."""
    return {
        "ts": r.created_at,
        "level": "info",
        "logger": ACCESS_LOGGER,
        "request_id": r.request_id,
        "tenant": r.tenant_slug,
        "key_prefix": r.key_prefix,
        "client_id": r.client_id,
        "endpoint": r.endpoint,
        "model": r.model,
        "provider": r.provider,
        "status": r.status_code,
        "latency_ms": round(r.latency_ms, 2),
        "ttft_ms": None if r.ttft_ms is None else round(r.ttft_ms, 2),
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "cost": r.cost,
        "cached": r.cached,
        "stream": r.stream,
        "error_type": r.error_type,
    }


def _text_line(fields: dict[str, Any]) -> str:
    head = f"{fields.pop('ts').isoformat(timespec='milliseconds')} INFO {fields.pop('logger')}:"
    fields.pop("level")
    return head + "".join(f" {k}={v}" for k, v in fields.items() if v is not None)


def render_calls(records: Iterable[CallRecord], as_json: bool) -> str:
    """The access log lines of ``records``, one per call."""
    if as_json:
        encode = _encoder.encode
        return b"\n".join([encode(access_fields(r)) for r in records]).decode()
    return "\n".join(_text_line(access_fields(r)) for r in records)


def log_calls(records: list[CallRecord], *, as_json: bool = True) -> None:
    """Write the access log lines of a batch of calls, up to 64 lines per log record (when INFO is
    enabled; small messages keep large short-lived strings, and the memory they pin, away)."""
    if records and _access.isEnabledFor(logging.INFO):
        for start in range(0, len(records), _LINES_PER_RECORD):
            _access.info(render_calls(records[start : start + _LINES_PER_RECORD], as_json))
