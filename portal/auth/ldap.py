"""LDAP sign-in: checks a user name and password against a directory and says who the person is.

This module owns :func:`authenticate`, the one async entry point, and the small blocking adapter
behind it (ldap3, run in a worker thread). Two ways to find the person:

- search-then-bind: bind as the service account (``bind_dn``, password from ``env:NAME``), search
  ``base_dn`` with ``user_search_filter`` (``%s`` is the user name escaped for filters), require
  exactly one entry, then bind as that entry's DN with the password;
- direct bind: bind as ``user_dn_template`` (``%s`` is the user name escaped as an RDN value), then
  read the entry.

Groups come from the entry's ``memberOf`` values or, when ``group_search_base`` is set, from a search
with ``group_search_filter`` (``%s`` is the user's DN, escaped). Each group is reported twice: its
name (first RDN value, or ``group_name_attribute``) and its full DN, so group mappings may use either.

Failures: a wrong password, an unknown or ambiguous user give :class:`LoginFailed` with one generic
message; anything that is the directory's or the operator's problem (unreachable, timeout, TLS,
service account refused, missing secret, bad base DN) gives :class:`DirectoryUnavailable` and is
logged. No exception of ldap3 or the socket layer leaves :func:`authenticate`.

``timeout_s`` bounds connecting and each answer; the whole sign-in is bounded by three times that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import ssl
import string
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ldap3 import ANONYMOUS, BASE, NONE, SIMPLE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn, parse_dn

from portal.auth.identity import DirectoryUnavailable, Identity, LoginFailed
from portal.config import LdapConfig

__all__ = ["BAD_CREDENTIALS_MESSAGE", "MAX_USERNAME_LENGTH", "UNAVAILABLE_MESSAGE", "authenticate"]

log = logging.getLogger(__name__)

BAD_CREDENTIALS_MESSAGE = "wrong user name or password"
UNAVAILABLE_MESSAGE = "the directory cannot be reached; try again in a moment or ask an administrator"
MAX_USERNAME_LENGTH = 256
_TOTAL_TIMEOUT_FACTOR = 3

_INVALID_CREDENTIALS = 49
_SIZE_LIMIT_EXCEEDED = 4
_NO_SUCH_OBJECT = 32
_INVALID_DN_SYNTAX = 34
_SERVER_TROUBLE = {51, 52, 80}  # busy, unavailable, other


class _Misconfigured(Exception):
    """The LDAP settings cannot work (an operator problem, reported as the directory being unavailable)."""


class _DirectoryTrouble(Exception):
    """The directory answered that it cannot serve now (busy, unavailable)."""


@dataclass(frozen=True, slots=True)
class _Entry:
    dn: str
    attributes: dict[str, list[str]]

    def first(self, name: str) -> str | None:
        values = self.attributes.get(name.lower())
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return self.attributes.get(name.lower(), [])


async def authenticate(config: LdapConfig, username: str, password: str) -> Identity:
    """Check ``username`` and ``password`` against the directory; return the person's identity."""
    if not username or len(username) > MAX_USERNAME_LENGTH or _has_control_chars(username):
        raise LoginFailed(BAD_CREDENTIALS_MESSAGE, reason="bad_credentials", username=username or None)
    if not password:
        # An LDAP simple bind with a DN and no password is an "unauthenticated bind": it succeeds.
        raise LoginFailed(BAD_CREDENTIALS_MESSAGE, reason="bad_credentials", username=username)
    deadline = config.timeout_s * _TOTAL_TIMEOUT_FACTOR
    try:
        return await asyncio.wait_for(
            asyncio.to_thread(_authenticate_blocking, config, username, password), timeout=deadline
        )
    except TimeoutError:
        log.warning("LDAP sign-in of %r took longer than %.1f s; giving up", username, deadline)
        raise DirectoryUnavailable(UNAVAILABLE_MESSAGE, username=username) from None


def _has_control_chars(text: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


def _authenticate_blocking(config: LdapConfig, username: str, password: str) -> Identity:
    connections: list[Connection] = []
    try:
        server = _server(config)
        if config.user_dn_template is not None:
            return _direct_bind(config, server, username, password, connections)
        return _search_then_bind(config, server, username, password, connections)
    except LoginFailed:
        raise
    except _Misconfigured as exc:
        log.error("LDAP is misconfigured: %s", exc)
        raise DirectoryUnavailable(UNAVAILABLE_MESSAGE, username=username) from exc
    except (LDAPException, OSError, _DirectoryTrouble) as exc:
        log.warning("LDAP directory %s unavailable: %s: %s", config.server, type(exc).__name__, exc)
        raise DirectoryUnavailable(UNAVAILABLE_MESSAGE, username=username) from exc
    except Exception as exc:
        log.exception("LDAP sign-in of %r failed unexpectedly", username)
        raise DirectoryUnavailable(UNAVAILABLE_MESSAGE, username=username) from exc
    finally:
        for conn in connections:
            with contextlib.suppress(Exception):
                conn.unbind()


def _server(config: LdapConfig) -> Server:
    raw = config.server.strip()
    try:
        parts = urlsplit(raw if "://" in raw else f"ldap://{raw}")
        port = parts.port
    except ValueError as exc:
        raise _Misconfigured(f"server {config.server!r} is not host, host:port or an ldap(s):// URL") from exc
    if parts.scheme not in {"ldap", "ldaps"} or not parts.hostname:
        raise _Misconfigured(f"server {config.server!r} is not host, host:port or an ldap(s):// URL")
    use_ssl = parts.scheme == "ldaps"
    host = parts.hostname
    tls = _HostCheckingTls(_tls_context(config), host) if use_ssl or config.start_tls else None
    return Server(
        host,
        port=port or (636 if use_ssl else 389),
        use_ssl=use_ssl,
        tls=tls,
        get_info=NONE,
        connect_timeout=config.timeout_s,
    )


def _tls_context(config: LdapConfig) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=config.ca_file)
    except (OSError, ValueError) as exc:
        raise _Misconfigured(f"ca_file {config.ca_file!r} cannot be used: {exc}") from exc
    if not config.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _HostCheckingTls(Tls):  # type: ignore[misc]
    """ldap3's TLS settings, wrapping sockets with a standard context that checks the certificate
    chain and the host name during the handshake (ldap3's own check uses the deprecated
    ``ssl.match_hostname``)."""

    def __init__(self, context: ssl.SSLContext, host: str) -> None:
        super().__init__(validate=context.verify_mode)
        self._context = context
        self._host = host

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        connection.socket = self._context.wrap_socket(
            connection.socket,
            server_side=False,
            do_handshake_on_connect=do_handshake,
            server_hostname=self._host,
        )


def _open(
    config: LdapConfig,
    server: Server,
    connections: list[Connection],
    user: str | None = None,
    password: str | None = None,
) -> Connection:
    """A connection, opened (and upgraded with StartTLS when configured), not yet bound."""
    conn = Connection(
        server,
        user=user,
        password=password,
        authentication=SIMPLE if user is not None else ANONYMOUS,
        receive_timeout=max(1, math.ceil(config.timeout_s)),  # ldap3 packs it as whole seconds
        raise_exceptions=False,
        auto_referrals=False,
        read_only=True,
    )
    connections.append(conn)
    conn.open()
    if config.start_tls and not server.ssl:
        conn.start_tls()
    return conn


def _service_connection(config: LdapConfig, server: Server, connections: list[Connection]) -> Connection:
    """Bound as the service account, or anonymous when no ``bind_dn`` is configured."""
    if config.bind_dn is None:
        conn = _open(config, server, connections)
        conn.bind()
        return conn
    conn = _open(config, server, connections, config.bind_dn, _resolve_secret(config.bind_password))
    if not conn.bind():
        result = conn.result or {}
        if result.get("result") in _SERVER_TROUBLE:
            raise _DirectoryTrouble(f"service bind: {result.get('description')} {result.get('message')}")
        raise _Misconfigured(
            f"the service account {config.bind_dn!r} cannot bind: {result.get('description')} "
            f"{result.get('message') or ''}".rstrip()
        )
    return conn


def _resolve_secret(reference: str | None) -> str:
    if reference is None:
        raise _Misconfigured("bind_dn is set but bind_password is not (expected env:NAME)")
    if not reference.startswith("env:"):
        raise _Misconfigured("bind_password must be a reference: env:NAME")
    value = os.environ.get(reference[4:])
    if not value:
        raise _Misconfigured(
            f"bind_password refers to the environment variable {reference[4:]}, which is unset"
        )
    return value


def _attributes(config: LdapConfig) -> list[str]:
    names = [config.email_attribute, config.name_attribute]
    if config.use_memberof and config.group_search_base is None:
        names.append("memberOf")
    return names


def _entries(conn: Connection) -> list[_Entry]:
    found = []
    for item in conn.response or []:
        if item.get("type") != "searchResEntry":
            continue
        attributes: dict[str, list[str]] = {}
        for name, value in (item.get("attributes") or {}).items():
            values = value if isinstance(value, list) else [value]
            attributes[str(name).lower()] = [_text(v) for v in values if v not in (None, "", b"")]
        found.append(_Entry(dn=str(item["dn"]), attributes=attributes))
    return found


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _check_search(conn: Connection, what: str) -> None:
    result = conn.result or {}
    code = result.get("result")
    if code in (0, _SIZE_LIMIT_EXCEEDED):
        return
    detail = f"{result.get('description')} {result.get('message') or ''}".rstrip()
    if code in _SERVER_TROUBLE:
        raise _DirectoryTrouble(f"{what}: {detail}")
    raise _Misconfigured(f"{what} failed: {detail}")


def _search_then_bind(
    config: LdapConfig, server: Server, username: str, password: str, connections: list[Connection]
) -> Identity:
    service = _service_connection(config, server, connections)
    search_filter = config.user_search_filter.replace("%s", escape_filter_chars(username))
    service.search(
        config.base_dn,
        search_filter,
        search_scope=SUBTREE,
        attributes=_attributes(config),
        size_limit=2,
        time_limit=max(1, math.ceil(config.timeout_s)),
    )
    _check_search(service, f"searching {config.base_dn!r} with {config.user_search_filter!r}")
    entries = _entries(service)
    if not entries:
        raise LoginFailed(BAD_CREDENTIALS_MESSAGE, reason="unknown_user", username=username)
    if len(entries) > 1:
        log.warning("LDAP user name %r matches several entries under %r; refusing", username, config.base_dn)
        raise LoginFailed(BAD_CREDENTIALS_MESSAGE, reason="ambiguous_user", username=username)
    entry = entries[0]
    user_conn = _open(config, server, connections, entry.dn, password)
    _bind_user(user_conn, username)
    reader = service if config.bind_dn is not None else user_conn
    return _identity(config, reader, entry, username)


def _direct_bind(
    config: LdapConfig, server: Server, username: str, password: str, connections: list[Connection]
) -> Identity:
    assert config.user_dn_template is not None
    user_dn = config.user_dn_template.replace("%s", escape_rdn(username))
    user_conn = _open(config, server, connections, user_dn, password)
    _bind_user(user_conn, username)
    reader = user_conn if config.bind_dn is None else _service_connection(config, server, connections)
    reader.search(user_dn, "(objectClass=*)", search_scope=BASE, attributes=_attributes(config))
    if (reader.result or {}).get("result") in (_NO_SUCH_OBJECT, _INVALID_DN_SYNTAX):
        log.warning("LDAP user %r bound as %r but that entry cannot be read", username, user_dn)
        return Identity(provider="ldap", subject=user_dn, username=username)
    _check_search(reader, f"reading {user_dn!r}")
    entries = _entries(reader)
    entry = entries[0] if entries else _Entry(dn=user_dn, attributes={})
    return _identity(config, reader, entry, username)


def _bind_user(conn: Connection, username: str) -> None:
    if conn.bind():
        return
    result = conn.result or {}
    code = result.get("result")
    if code == _INVALID_CREDENTIALS:
        raise LoginFailed(BAD_CREDENTIALS_MESSAGE, reason="bad_credentials", username=username)
    if code in _SERVER_TROUBLE:
        raise _DirectoryTrouble(f"user bind: {result.get('description')} {result.get('message')}")
    log.warning(
        "LDAP refused the bind of %r: %s %s", username, result.get("description"), result.get("message")
    )
    raise LoginFailed(BAD_CREDENTIALS_MESSAGE, reason="refused", username=username)


def _identity(config: LdapConfig, reader: Connection, entry: _Entry, username: str) -> Identity:
    return Identity(
        provider="ldap",
        subject=entry.dn,
        email=entry.first(config.email_attribute),
        display_name=entry.first(config.name_attribute) or "",
        groups=_groups(config, reader, entry),
        username=username,
    )


def _groups(config: LdapConfig, reader: Connection, entry: _Entry) -> tuple[str, ...]:
    names: list[str] = []
    if config.group_search_base is not None:
        reader.search(
            config.group_search_base,
            config.group_search_filter.replace("%s", escape_filter_chars(entry.dn)),
            search_scope=SUBTREE,
            attributes=[config.group_name_attribute],
            time_limit=max(1, math.ceil(config.timeout_s)),
        )
        _check_search(reader, f"searching groups under {config.group_search_base!r}")
        for group in _entries(reader):
            names.extend(group.all(config.group_name_attribute) or [_rdn_value(group.dn)])
            names.append(group.dn)
    elif config.use_memberof:
        for dn in entry.all("memberOf"):
            names.extend((_rdn_value(dn), dn))
    return tuple(dict.fromkeys(name for name in names if name))


def _rdn_value(dn: str) -> str:
    """The (unescaped) value of a DN's first RDN: ``cn=team-eng,ou=groups,...`` -> ``team-eng``."""
    try:
        components = parse_dn(dn)
    except LDAPException:
        return ""
    return _unescape_dn_value(components[0][1]) if components else ""


def _unescape_dn_value(value: str) -> str:
    out = bytearray()
    i = 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            pair = value[i + 1 : i + 3]
            if len(pair) == 2 and all(ch in string.hexdigits for ch in pair):
                out += bytes.fromhex(pair)
                i += 3
                continue
            out += value[i + 1].encode()
            i += 2
            continue
        out += value[i].encode()
        i += 1
    return out.decode("utf-8", errors="replace")
