"""Redaction of stored prompts and responses: secrets and personal data are masked before storage.

Masked, in this order: API-key-like strings (``sk-...``, AWS ``AKIA``/``ASIA`` ids, Google ``AIza``,
GitHub ``ghp_``..., Slack ``xox.-``, ``Bearer`` tokens), e-mail addresses, payment card numbers
(13-19 digits passing the Luhn check), phone numbers (9-15 digits written with a leading ``+`` or
with spaces, dots, dashes or parentheses; bare digit runs, dates and IP addresses are left alone),
then the operator's own patterns (``PORTAL_REDACT_PATTERNS``). Each match becomes
``[REDACTED:<kind>]`` (``[REDACTED]`` for the operator's patterns).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["Redactor", "luhn_valid"]

_KEYS = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"sk-[A-Za-z0-9_\-]{16,}"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|AIza[0-9A-Za-z_\-]{35}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|xox[abposr]-[A-Za-z0-9\-]{10,}"
    r")(?![A-Za-z0-9])"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{16,}"
)
_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
_PHONE = re.compile(r"(?<![\w+])\+?[\d(][\d().\- ]{6,}\d(?!\w)")
_NOT_PHONE = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$|\d{4}-\d{2}-\d{2}|^\d+$|^\d+\.\d+$")


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn checksum (payment card numbers do)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[REDACTED:card]" if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group(0)


def _phone(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = sum(c.isdigit() for c in text)
    if not 9 <= digits <= 15 or _NOT_PHONE.search(text):
        return text
    return "[REDACTED:phone]"


class Redactor:
    """Masks secrets and personal data in text, or in every string of a JSON-like value."""

    def __init__(self, extra_patterns: Iterable[str] = ()) -> None:
        self._extra = [re.compile(p) for p in extra_patterns]

    def text(self, value: str) -> str:
        """``value`` with every match masked."""
        value = _KEYS.sub("[REDACTED:key]", value)
        value = _EMAIL.sub("[REDACTED:email]", value)
        value = _CARD.sub(_card, value)
        value = _PHONE.sub(_phone, value)
        for pattern in self._extra:
            value = pattern.sub("[REDACTED]", value)
        return value

    def value(self, value: Any) -> Any:
        """A copy of a JSON-like value (dicts, lists, strings) with every string redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        return value
