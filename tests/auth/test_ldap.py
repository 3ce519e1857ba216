"""LDAP sign-in (:mod:`portal.auth.ldap`) against a real OpenLDAP ``slapd`` (``tests/fakes/ldap_fixture``).

Covers search-then-bind and direct bind, groups from ``memberOf`` and from a group search, wrong
password, unknown and ambiguous users, empty passwords, filter and DN injection, user names with
special characters, StartTLS and LDAPS checked against a CA, and an unreachable or silent directory.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator

import pytest
from ldap3 import SUBTREE, Connection, Server

from portal.auth.identity import DirectoryUnavailable, Identity, LoginFailed
from portal.auth.ldap import BAD_CREDENTIALS_MESSAGE, MAX_USERNAME_LENGTH, authenticate
from portal.config import LdapConfig
from tests.conftest import free_port
from tests.fakes.ldap_fixture import Slapd

INJECTIONS = [
    "*",
    "*)(uid=*",
    "*)(|(uid=*",
    "alice)(|(uid=*",
    "alice)(uid=*)",
    "admin*",
    "al*",
    "*lice",
    "(uid=alice)",
    "alice\\",
    "*)(objectClass=*",
    "alice)(&)",
]
DN_INJECTIONS = [
    "alice,ou=people,dc=example,dc=org",
    "alice,ou=people",
    "alice+cn=Alice Liddell",
    "x,cn=portal",
    "cn=portal,dc=example,dc=org",
    "alice\\",
    "#0405616c696365",
    "*",
]


def group_names(slapd: Slapd, *names: str) -> set[str]:
    return set(names) | {slapd.group_dn(name) for name in names}


async def expect_failure(config: LdapConfig, username: str, password: str) -> LoginFailed:
    with pytest.raises(LoginFailed) as caught:
        await authenticate(config, username, password)
    assert not isinstance(caught.value, DirectoryUnavailable), caught.value.message
    assert caught.value.message == BAD_CREDENTIALS_MESSAGE
    return caught.value


async def expect_unavailable(
    config: LdapConfig,
    username: str = "alice",
    password: str = "pw",  # noqa: S107
    *,
    cause: str = "",
) -> float:
    """Assert the sign-in fails as unavailable (with ``cause`` in the underlying error); return the time."""
    started = time.monotonic()
    with pytest.raises(DirectoryUnavailable) as caught:
        await authenticate(config, username, password)
    elapsed = time.monotonic() - started
    assert caught.value.reason == "unavailable"
    assert "cannot be reached" in caught.value.message
    assert caught.value.username == username
    assert cause in str(caught.value.__cause__)
    return elapsed


# --- success ---------------------------------------------------------------------------------------


async def test_search_then_bind_returns_identity_with_memberof_groups(slapd: Slapd) -> None:
    alice = slapd.users["alice"]
    identity = await authenticate(slapd.search_config(), "alice", alice.password)
    assert identity == Identity(
        provider="ldap",
        subject=alice.dn,
        email="alice@example.org",
        display_name="Alice Liddell",
        groups=("portal-admins", slapd.group_dn("portal-admins")),
        username="alice",
    )


async def test_group_search_instead_of_memberof(slapd: Slapd) -> None:
    bob = slapd.users["bob"]
    config = slapd.search_config(group_search_base=f"ou=groups,{slapd.base_dn}", use_memberof=False)
    identity = await authenticate(config, "bob", bob.password)
    assert identity.subject == bob.dn
    assert set(identity.groups) == group_names(slapd, "team-eng")


async def test_group_search_with_other_filter_and_name_attribute(slapd: Slapd) -> None:
    alice = slapd.users["alice"]
    config = slapd.search_config(
        group_search_base=f"ou=groups,{slapd.base_dn}",
        group_search_filter="(&(objectClass=groupOfNames)(member=%s))",
        group_name_attribute="cn",
    )
    identity = await authenticate(config, "alice", alice.password)
    assert set(identity.groups) == group_names(slapd, "portal-admins")


async def test_memberof_can_be_turned_off(slapd: Slapd) -> None:
    alice = slapd.users["alice"]
    identity = await authenticate(slapd.search_config(use_memberof=False), "alice", alice.password)
    assert identity.groups == ()


async def test_user_without_mail_or_groups(slapd: Slapd) -> None:
    carol = slapd.users["carol"]
    identity = await authenticate(slapd.search_config(), "carol", carol.password)
    assert (identity.email, identity.display_name, identity.groups) == (None, "Carol Danvers", ())


async def test_direct_bind_reads_the_entry_as_the_user(slapd: Slapd) -> None:
    alice = slapd.users["alice"]
    identity = await authenticate(slapd.direct_config(), "alice", alice.password)
    assert identity.subject == alice.dn
    assert (identity.email, identity.display_name) == ("alice@example.org", "Alice Liddell")
    assert set(identity.groups) == group_names(slapd, "portal-admins")


async def test_direct_bind_with_group_search_and_service_account(slapd: Slapd) -> None:
    bob = slapd.users["bob"]
    config = slapd.direct_config(
        bind_dn=slapd.service_dn,
        bind_password=slapd.service_password_ref,
        group_search_base=f"ou=groups,{slapd.base_dn}",
    )
    identity = await authenticate(config, "bob", bob.password)
    assert identity.subject == bob.dn
    assert set(identity.groups) == group_names(slapd, "team-eng")


async def test_subject_is_the_directory_dn_whatever_the_case_typed(slapd: Slapd) -> None:
    alice = slapd.users["alice"]
    for config in (slapd.search_config(), slapd.direct_config()):
        identity = await authenticate(config, "ALICE", alice.password)
        assert identity.subject == alice.dn
        assert identity.username == "ALICE"


async def test_server_as_host_port_and_url_with_slash(slapd: Slapd) -> None:
    alice = slapd.users["alice"]
    for server in (f"127.0.0.1:{slapd.port}", f"{slapd.url}/"):
        identity = await authenticate(slapd.search_config(server=server), "alice", alice.password)
        assert identity.subject == alice.dn


async def test_concurrent_sign_ins(slapd: Slapd) -> None:
    config = slapd.search_config()
    names = ["alice", "bob", "carol", "o'brien"] * 3
    identities = await asyncio.gather(*(authenticate(config, n, slapd.users[n].password) for n in names))
    assert [i.subject for i in identities] == [slapd.users[n].dn for n in names]


# --- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["search", "direct"])
async def test_wrong_password(slapd: Slapd, mode: str) -> None:
    config = slapd.search_config() if mode == "search" else slapd.direct_config()
    failure = await expect_failure(config, "alice", slapd.users["bob"].password)
    assert (failure.reason, failure.username) == ("bad_credentials", "alice")


async def test_unknown_user_looks_like_a_wrong_password(slapd: Slapd) -> None:
    failure = await expect_failure(slapd.search_config(), "mallory", "whatever-password")
    assert (failure.reason, failure.username) == ("unknown_user", "mallory")


async def test_unknown_user_in_direct_bind(slapd: Slapd) -> None:
    failure = await expect_failure(slapd.direct_config(), "mallory", "whatever-password")
    assert failure.reason == "bad_credentials"


@pytest.mark.parametrize("mode", ["search", "direct"])
@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("alice", ""),
        ("", "secret"),
        ("", ""),
        ("a" * (MAX_USERNAME_LENGTH + 1), "secret"),
        ("alice\x00", "secret"),
        ("alice\n", "secret"),
    ],
)
async def test_empty_or_malformed_input_is_refused_before_asking(
    slapd: Slapd, mode: str, username: str, password: str
) -> None:
    config = slapd.search_config() if mode == "search" else slapd.direct_config()
    started = time.monotonic()
    failure = await expect_failure(config, username, password)
    assert failure.reason == "bad_credentials"
    assert time.monotonic() - started < 0.5


async def test_empty_password_is_refused_even_when_the_directory_is_down() -> None:
    config = LdapConfig(server=f"127.0.0.1:{free_port()}", user_dn_template="uid=%s,dc=example,dc=org")
    failure = await expect_failure(config, "alice", "")
    assert failure.reason == "bad_credentials"


async def test_ambiguous_user_is_refused(slapd: Slapd) -> None:
    config = slapd.search_config(base_dn=slapd.base_dn)
    failure = await expect_failure(config, "dup", slapd.users["dup"].password)
    assert failure.reason == "ambiguous_user"
    identity = await authenticate(slapd.search_config(), "dup", slapd.users["dup"].password)
    assert identity.subject == slapd.users["dup"].dn


async def test_seed_filter_samaccountname_finds_nobody_in_openldap(slapd: Slapd) -> None:
    config = slapd.search_config(user_search_filter="(sAMAccountName=%s)", base_dn=slapd.base_dn)
    failure = await expect_failure(config, "alice", slapd.users["alice"].password)
    assert failure.reason == "unknown_user"


# --- injection -------------------------------------------------------------------------------------


def raw_search(slapd: Slapd, search_filter: str) -> list[str]:
    """What the directory returns for an unescaped filter (the attack the escaping prevents)."""
    conn = Connection(Server(slapd.url), slapd.service_dn, slapd.service_password, auto_bind=True)
    try:
        conn.search(f"ou=people,{slapd.base_dn}", search_filter, SUBTREE, attributes=["uid"])
        return [str(e["dn"]) for e in conn.response or [] if e.get("type") == "searchResEntry"]
    finally:
        conn.unbind()


async def test_the_raw_filters_would_match_other_users(slapd: Slapd) -> None:
    assert slapd.users["administrator"].dn in raw_search(slapd, "(&(objectClass=inetOrgPerson)(uid=admin*))")
    assert len(raw_search(slapd, "(&(objectClass=inetOrgPerson)(uid=*))")) > 3


@pytest.mark.parametrize("username", INJECTIONS)
async def test_filter_injection_matches_nobody(slapd: Slapd, username: str) -> None:
    config = slapd.search_config()
    for person in ("alice", "administrator", "a*b"):
        failure = await expect_failure(config, username, slapd.users[person].password)
        assert failure.reason == "unknown_user", (username, person)


@pytest.mark.parametrize("username", INJECTIONS)
async def test_filter_injection_with_the_name_used_twice(slapd: Slapd, username: str) -> None:
    config = slapd.search_config(
        user_search_filter="(|(uid=%s)(mail=%s))", group_search_base=f"ou=groups,{slapd.base_dn}"
    )
    failure = await expect_failure(config, username, slapd.users["alice"].password)
    assert failure.reason == "unknown_user"


@pytest.mark.parametrize("username", DN_INJECTIONS)
async def test_dn_injection_in_direct_bind_does_not_bind(slapd: Slapd, username: str) -> None:
    for password in (slapd.users["alice"].password, slapd.service_password):
        failure = await expect_failure(slapd.direct_config(), username, password)
        assert failure.reason == "bad_credentials", username


@pytest.mark.parametrize("uid", ["o'brien", "a*b", "x,y+z"])
@pytest.mark.parametrize("mode", ["search", "direct"])
async def test_user_names_with_special_characters_work(slapd: Slapd, uid: str, mode: str) -> None:
    person = slapd.users[uid]
    config = slapd.search_config() if mode == "search" else slapd.direct_config()
    identity = await authenticate(config, uid, person.password)
    assert (identity.subject, identity.email, identity.username) == (person.dn, person.email, uid)
    assert set(identity.groups) == group_names(slapd, *person.groups)


@pytest.mark.parametrize("uid", ["o'brien", "x,y+z"])
async def test_group_search_with_a_dn_that_needs_escaping(slapd: Slapd, uid: str) -> None:
    person = slapd.users[uid]
    config = slapd.search_config(group_search_base=f"ou=groups,{slapd.base_dn}")
    identity = await authenticate(config, uid, person.password)
    assert set(identity.groups) == group_names(slapd, "team-eng")


# --- TLS -------------------------------------------------------------------------------------------


async def test_start_tls_with_the_ca(slapd: Slapd) -> None:
    alice = slapd.users["alice"]
    config = slapd.search_config(start_tls=True, ca_file=slapd.ca_file)
    assert (await authenticate(config, "alice", alice.password)).subject == alice.dn
    config = slapd.direct_config(start_tls=True, ca_file=slapd.ca_file)
    assert (await authenticate(config, "alice", alice.password)).subject == alice.dn


async def test_ldaps_with_the_ca(slapd: Slapd) -> None:
    bob = slapd.users["bob"]
    identity = await authenticate(
        slapd.search_config(server=slapd.ldaps_url, ca_file=slapd.ca_file), "bob", bob.password
    )
    assert set(identity.groups) == group_names(slapd, "team-eng")


@pytest.mark.parametrize("transport", ["start_tls", "ldaps"])
async def test_tls_with_an_unknown_ca_is_refused(slapd: Slapd, transport: str) -> None:
    config = (
        slapd.search_config(start_tls=True, ca_file=slapd.other_ca_file)
        if transport == "start_tls"
        else slapd.search_config(server=slapd.ldaps_url, ca_file=slapd.other_ca_file)
    )
    await expect_unavailable(
        config, "alice", slapd.users["alice"].password, cause="CERTIFICATE_VERIFY_FAILED"
    )


@pytest.mark.parametrize("transport", ["start_tls", "ldaps"])
async def test_tls_without_verification(slapd: Slapd, transport: str) -> None:
    alice = slapd.users["alice"]
    config = (
        slapd.search_config(start_tls=True, ca_file=slapd.other_ca_file, verify_tls=False)
        if transport == "start_tls"
        else slapd.search_config(server=slapd.ldaps_url, verify_tls=False)
    )
    assert (await authenticate(config, "alice", alice.password)).subject == alice.dn


async def test_tls_checks_the_host_name(slapd: Slapd) -> None:
    config = slapd.search_config(server=f"ldaps://localhost:{slapd.ldaps_port}", ca_file=slapd.ca_file)
    await expect_unavailable(config, "alice", slapd.users["alice"].password, cause="Hostname mismatch")


async def test_ldaps_url_on_the_plain_port_is_unavailable(slapd: Slapd) -> None:
    config = slapd.search_config(server=f"ldaps://127.0.0.1:{slapd.port}", ca_file=slapd.ca_file)
    assert await expect_unavailable(config, "alice", slapd.users["alice"].password) < 7


# --- unavailable directory -------------------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (kernel backlog) and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


async def test_closed_port_is_unavailable_quickly() -> None:
    config = LdapConfig(server=f"127.0.0.1:{free_port()}", timeout_s=2.0)
    assert await expect_unavailable(config) < 1.0


@pytest.mark.parametrize("mode", ["search", "direct", "start_tls", "ldaps"])
async def test_silent_server_times_out(silent_port: int, mode: str) -> None:
    server = f"ldaps://127.0.0.1:{silent_port}" if mode == "ldaps" else f"127.0.0.1:{silent_port}"
    config = LdapConfig(
        server=server,
        base_dn="dc=example,dc=org",
        user_dn_template="uid=%s,dc=example,dc=org" if mode == "direct" else None,
        bind_dn="cn=portal,dc=example,dc=org" if mode != "direct" else None,
        bind_password="env:TEST_LDAP_SERVICE_PASSWORD" if mode != "direct" else None,
        start_tls=mode == "start_tls",
        timeout_s=1.0,
    )
    elapsed = await expect_unavailable(config)
    assert 0.8 < elapsed < 3.5


async def test_wrong_service_password_is_an_operator_problem(
    slapd: Slapd, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TEST_LDAP_WRONG_SERVICE_PASSWORD", "not-the-password")
    config = slapd.search_config(bind_password="env:TEST_LDAP_WRONG_SERVICE_PASSWORD")
    with caplog.at_level(logging.ERROR, logger="portal.auth.ldap"):
        await expect_unavailable(config, "alice", slapd.users["alice"].password, cause="cannot bind")
    assert any(slapd.service_dn in r.getMessage() for r in caplog.records)
    assert all("not-the-password" not in r.getMessage() for r in caplog.records)


async def test_unset_service_password_variable_is_an_operator_problem(slapd: Slapd) -> None:
    config = slapd.search_config(bind_password="env:TEST_LDAP_NO_SUCH_VARIABLE")
    await expect_unavailable(config, "alice", slapd.users["alice"].password)
    await expect_unavailable(slapd.search_config(bind_password=None), "alice", slapd.users["alice"].password)


async def test_unreadable_ca_file_is_an_operator_problem(slapd: Slapd) -> None:
    config = slapd.search_config(start_tls=True, ca_file="/nonexistent/ca.pem")
    await expect_unavailable(config, "alice", slapd.users["alice"].password, cause="ca_file")


async def test_missing_base_dn_is_an_operator_problem(slapd: Slapd) -> None:
    config = slapd.search_config(base_dn="ou=nowhere,dc=example,dc=org")
    await expect_unavailable(config, "alice", slapd.users["alice"].password, cause="noSuchObject")


@pytest.mark.parametrize("server", ["http://127.0.0.1:389", "127.0.0.1:notaport", "ldap://"])
async def test_unusable_server_setting_is_an_operator_problem(server: str) -> None:
    await expect_unavailable(LdapConfig(server=server))
