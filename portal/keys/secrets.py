"""Key secrets: how a key is generated, hashed for storage, and shown (a short display prefix).

Keys carry 256 bits of randomness, so a fast hash (SHA-256) is the right storage form: it makes the
per-request lookup cheap and a stolen table useless. Keys chosen by clients (the COO-LLM seed lets
``api_key`` be supplied) are hashed the same way.
"""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["KEY_PREFIX", "display_prefix", "generate_key", "hash_key"]

KEY_PREFIX = "sk-"


def generate_key(kind: str = "") -> str:
    """A new secret key, e.g. ``sk-...`` (``sk-admin-...`` for admin keys)."""
    head = f"{KEY_PREFIX}{kind}-" if kind else KEY_PREFIX
    return head + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of a key: hex SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    """What may be shown of a key after creation: its first characters and an ellipsis.

    Generated keys show their kind and 5 to 11 random characters (``sk-admin-AbCdE...``): enough to
    tell keys apart by eye and by prefix, while over 190 bits stay secret.
    """
    if len(key) >= 40:
        visible = 14
    elif len(key) >= 24:
        visible = 10
    else:
        visible = max(3, len(key) // 3)
    return key[:visible] + "..."
