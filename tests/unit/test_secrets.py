"""Key secrets and credential encryption."""

from __future__ import annotations

import hashlib

import pytest

from portal.catalog.crypto import CredentialCipher, InvalidToken
from portal.keys.secrets import display_prefix, generate_key, hash_key


def test_generated_keys_are_long_random_and_prefixed() -> None:
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(k.startswith("sk-") and len(k) >= 40 for k in keys)
    assert generate_key("admin").startswith("sk-admin-")


def test_hash_is_sha256_hex() -> None:
    assert hash_key("sk-abc") == hashlib.sha256(b"sk-abc").hexdigest()


def test_display_prefix_reveals_only_the_start() -> None:
    key = generate_key()
    shown = display_prefix(key)
    assert shown.endswith("...")
    assert len(shown) - 3 <= 14
    assert key.startswith(shown[:-3])
    admin = display_prefix(generate_key("admin"))
    assert len(admin.removeprefix("sk-admin-").removesuffix("...")) == 5, "admin keys differ by 5 characters"
    assert len(display_prefix("sk-prod-app-key-123")) - 3 < len("sk-prod-app-key-123") // 2


def test_credentials_round_trip_and_ciphertext_hides_them() -> None:
    cipher = CredentialCipher("a" * 40)
    token = cipher.encrypt("sk-live-provider-secret")
    assert b"sk-live" not in token
    assert cipher.decrypt(token) == "sk-live-provider-secret"


def test_rotated_secret_still_decrypts_old_credentials() -> None:
    old = CredentialCipher("old-secret-" + "x" * 30)
    token = old.encrypt("value")
    rotated = CredentialCipher("new-secret-" + "y" * 30, previous=("old-secret-" + "x" * 30,))
    assert rotated.decrypt(token) == "value"
    with pytest.raises(InvalidToken):
        CredentialCipher("new-secret-" + "y" * 30).decrypt(token)
