"""The shipped default price table: USD per million input/output tokens for well-known models.

Operators override it per deployment (``input_price_per_mtok`` / ``output_price_per_mtok``). A model
is found by the longest table name contained in its upstream id, so ``anthropic.claude-3-haiku-
20240307-v1:0`` and ``claude-3-haiku-20240307`` both use ``claude-3-haiku``. Unknown models cost 0
(and say so in the catalog), never a guess.
"""

from __future__ import annotations

from decimal import Decimal

__all__ = ["DEFAULT_PRICES", "default_price"]

_D = Decimal

DEFAULT_PRICES: dict[str, tuple[Decimal, Decimal]] = {
    "gpt-4o-mini": (_D("0.15"), _D("0.60")),
    "gpt-4o": (_D("2.50"), _D("10.00")),
    "gpt-4.1-nano": (_D("0.10"), _D("0.40")),
    "gpt-4.1-mini": (_D("0.40"), _D("1.60")),
    "gpt-4.1": (_D("2.00"), _D("8.00")),
    "gpt-4-turbo": (_D("10.00"), _D("30.00")),
    "gpt-4": (_D("30.00"), _D("60.00")),
    "gpt-3.5-turbo": (_D("0.50"), _D("1.50")),
    "o1-mini": (_D("1.10"), _D("4.40")),
    "o1": (_D("15.00"), _D("60.00")),
    "o3-mini": (_D("1.10"), _D("4.40")),
    "o4-mini": (_D("1.10"), _D("4.40")),
    "text-embedding-3-small": (_D("0.02"), _D("0")),
    "text-embedding-3-large": (_D("0.13"), _D("0")),
    "text-embedding-ada-002": (_D("0.10"), _D("0")),
    "claude-3-haiku": (_D("0.25"), _D("1.25")),
    "claude-3-sonnet": (_D("3.00"), _D("15.00")),
    "claude-3-opus": (_D("15.00"), _D("75.00")),
    "claude-3-5-haiku": (_D("0.80"), _D("4.00")),
    "claude-3-5-sonnet": (_D("3.00"), _D("15.00")),
    "claude-3-7-sonnet": (_D("3.00"), _D("15.00")),
    "claude-haiku-4-5": (_D("1.00"), _D("5.00")),
    "claude-sonnet-4-5": (_D("3.00"), _D("15.00")),
    "claude-sonnet-4": (_D("3.00"), _D("15.00")),
    "claude-opus-4": (_D("15.00"), _D("75.00")),
    "gemini-1.5-flash-8b": (_D("0.0375"), _D("0.15")),
    "gemini-1.5-flash": (_D("0.075"), _D("0.30")),
    "gemini-1.5-pro": (_D("1.25"), _D("5.00")),
    "gemini-2.0-flash-lite": (_D("0.075"), _D("0.30")),
    "gemini-2.0-flash": (_D("0.10"), _D("0.40")),
    "gemini-2.5-flash": (_D("0.30"), _D("2.50")),
    "gemini-2.5-pro": (_D("1.25"), _D("10.00")),
    "text-embedding-004": (_D("0"), _D("0")),
}

_BY_LENGTH = sorted(DEFAULT_PRICES, key=len, reverse=True)


def default_price(upstream_model: str) -> tuple[Decimal, Decimal] | None:
    """Default (input, output) USD per million tokens for ``upstream_model``, or ``None`` if unknown."""
    name = upstream_model.lower()
    for known in _BY_LENGTH:
        if known in name:
            return DEFAULT_PRICES[known]
    return None
