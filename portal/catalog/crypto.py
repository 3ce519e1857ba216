"""Encryption at rest for provider credentials: Fernet keys derived from ``PORTAL_SECRET_KEY`` by HKDF."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["CredentialCipher", "InvalidToken"]


def _derive(secret: str) -> Fernet:
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"portal credentials v1").derive(
        secret.encode()
    )
    return Fernet(base64.urlsafe_b64encode(raw))


class CredentialCipher:
    """Encrypts with the current secret; decrypts with it or any previous one (for key rotation)."""

    def __init__(self, secret: str, previous: tuple[str, ...] = ()) -> None:
        self._fernet = MultiFernet([_derive(secret), *(_derive(s) for s in previous)])

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, ciphertext: bytes) -> str:
        return self._fernet.decrypt(ciphertext).decode()
