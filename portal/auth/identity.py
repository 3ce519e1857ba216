"""What a sign-in method hands over: an :class:`Identity` on success, a :class:`LoginFailed` otherwise.

Every method (OIDC, LDAP, local break-glass) produces the same shape, so user creation, group
mapping, sessions and auditing are done once, in :mod:`portal.auth.login`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DirectoryUnavailable", "Identity", "LoginFailed"]


@dataclass(frozen=True, slots=True)
class Identity:
    """A person the identity provider vouched for.

    ``provider`` names the source (``oidc:<name>``, ``ldap``, ``local``); ``subject`` is its stable id
    there (OIDC ``sub``, LDAP DN, local account name); ``groups`` feed the group mappings.
    """

    provider: str
    subject: str
    email: str | None = None
    display_name: str = ""
    groups: tuple[str, ...] = ()
    username: str | None = None


class LoginFailed(Exception):
    """A sign-in that did not succeed. ``message`` is safe to show; ``reason`` is for the audit log
    (``bad_credentials``, ``unknown_user``, ``invalid_state``, ``invalid_token``, ``unavailable``...)."""

    def __init__(self, message: str, *, reason: str, username: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.username = username


class DirectoryUnavailable(LoginFailed):
    """The identity provider could not be reached or answered nonsense (timeout, refused, TLS)."""

    def __init__(self, message: str, *, username: str | None = None) -> None:
        super().__init__(message, reason="unavailable", username=username)
