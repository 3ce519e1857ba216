"""Shapes shared by the API's domains: exact money as strings, and the limit fields of a subject."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

import msgspec

__all__ = ["Limit", "MoneyStr", "money", "unset_fields"]

# Money travels as a decimal string ("12.5"), never a float, so it stays exact end to end.
MoneyStr = Annotated[str, msgspec.Meta(pattern=r"^\d{1,16}(\.\d{1,12})?$", examples=["12.50"])]
Limit = Annotated[int, msgspec.Meta(ge=1, le=10**12)]


def money(value: Decimal | None) -> str:
    """``Decimal`` -> plain decimal string without exponent or trailing zeros ("0", "12.5")."""
    if value is None:
        return "0"
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


def unset_fields(data: msgspec.Struct) -> dict[str, Any]:
    """The fields a PATCH body actually carries (``null`` included, absent ones left out)."""
    return {
        name: value for name in data.__struct_fields__ if (value := getattr(data, name)) is not msgspec.UNSET
    }
