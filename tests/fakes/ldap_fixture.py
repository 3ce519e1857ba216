"""Pytest fixture ``slapd``: a real OpenLDAP directory for the test session.

It owns a temporary directory with its own ``slapd.conf`` (schemas core, cosine, inetorgperson;
``back_mdb``; the ``memberof`` overlay), a throw-away CA and server certificate (so StartTLS and
LDAPS are verified against ``ca_file``), and a ``slapd`` child process listening on
``ldap://127.0.0.1:PORT`` and ``ldaps://127.0.0.1:PORT``. People and groups are loaded online with
``ldapadd`` so the overlay fills ``memberOf``. The process is stopped at the end of the session.

ACLs: anonymous may only authenticate; the service account ``cn=portal,dc=example,dc=org`` and
authenticated users may read (never ``userPassword``).

The service account's password is exported as ``TEST_LDAP_SERVICE_PASSWORD`` for the session, so
``LdapConfig(bind_password="env:TEST_LDAP_SERVICE_PASSWORD")`` works; :meth:`Slapd.search_config`
and :meth:`Slapd.direct_config` build ready-to-use configurations.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from portal.config import LdapConfig
from tests.conftest import free_port

__all__ = ["LdapUser", "Slapd", "slapd"]

SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
LDAPADD = shutil.which("ldapadd") or "/usr/bin/ldapadd"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
BASE_DN = "dc=example,dc=org"
SERVICE_PASSWORD_ENV = "TEST_LDAP_SERVICE_PASSWORD"


@dataclass(frozen=True, slots=True)
class LdapUser:
    """A person in the test directory: ``uid`` is what they type, ``dn`` what the directory calls them."""

    uid: str
    dn: str
    password: str
    name: str
    email: str | None = None
    groups: tuple[str, ...] = ()
    """Names (``cn``) of the groups the person is a member of."""


@dataclass(frozen=True, slots=True)
class Slapd:
    """A running slapd: where it listens, its accounts, people and groups."""

    url: str
    ldaps_url: str
    host: str
    port: int
    ldaps_port: int
    base_dn: str
    service_dn: str
    service_password: str
    service_password_ref: str
    admin_dn: str
    admin_password: str
    ca_file: str
    other_ca_file: str
    """A CA that did not sign the server certificate (validation must fail with it)."""
    users: dict[str, LdapUser]
    group_dns: dict[str, str] = field(default_factory=dict)

    def group_dn(self, name: str) -> str:
        """The DN of the group called ``name``."""
        return self.group_dns[name]

    def search_config(self, **overrides: Any) -> LdapConfig:
        """Search-then-bind with the service account, groups from ``memberOf``."""
        values: dict[str, Any] = {
            "server": self.url,
            "base_dn": f"ou=people,{self.base_dn}",
            "user_search_filter": "(&(objectClass=inetOrgPerson)(uid=%s))",
            "bind_dn": self.service_dn,
            "bind_password": self.service_password_ref,
            "timeout_s": 5.0,
        }
        values.update(overrides)
        return LdapConfig(**values)

    def direct_config(self, **overrides: Any) -> LdapConfig:
        """Direct bind with ``uid=%s,ou=people,<base>``, no service account."""
        values: dict[str, Any] = {
            "server": self.url,
            "base_dn": self.base_dn,
            "user_dn_template": f"uid=%s,ou=people,{self.base_dn}",
            "timeout_s": 5.0,
        }
        values.update(overrides)
        return LdapConfig(**values)


def _ssha(password: str) -> str:
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt, usedforsecurity=False).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _ldif_value(name: str, value: str) -> str:
    if value.isascii() and value.isprintable() and not value.startswith((" ", ":", "<")):
        return f"{name}: {value}"
    return f"{name}:: {base64.b64encode(value.encode()).decode()}"


def _people() -> list[tuple[str, LdapUser]]:
    """(organizational unit, user) for everyone in the directory; ``dup`` is there twice."""

    def user(uid: str, rdn: str, name: str, email: str | None, groups: tuple[str, ...] = ()) -> LdapUser:
        return LdapUser(
            uid=uid,
            dn=f"uid={rdn},ou=people,{BASE_DN}",
            password=f"{uid}-Pa55-{secrets.token_hex(4)}",
            name=name,
            email=email,
            groups=groups,
        )

    return [
        ("people", user("alice", "alice", "Alice Liddell", "alice@example.org", ("portal-admins",))),
        ("people", user("bob", "bob", "Bob Builder", "bob@example.org", ("team-eng",))),
        ("people", user("carol", "carol", "Carol Danvers", None)),
        ("people", user("administrator", "administrator", "Ada Admin", "admin@example.org")),
        ("people", user("o'brien", "o'brien", "Conan O'Brien", "obrien@example.org", ("team-eng",))),
        ("people", user("a*b", "a*b", "Asterisk Person", "ab@example.org")),
        ("people", user("x,y+z", "x\\2Cy\\2Bz", "Comma Plus", "xyz@example.org", ("team-eng",))),
        ("people", user("dup", "dup", "Dup People", None)),
        (
            "contractors",
            LdapUser(
                uid="dup",
                dn=f"uid=dup,ou=contractors,{BASE_DN}",
                password="dup-contractor-pass",
                name="Dup Contractor",
            ),
        ),
    ]


def _ldif(service_password: str, users: list[tuple[str, LdapUser]]) -> tuple[str, dict[str, str]]:
    blocks = [
        f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example",
        f"dn: ou=people,{BASE_DN}\nobjectClass: organizationalUnit\nou: people",
        f"dn: ou=contractors,{BASE_DN}\nobjectClass: organizationalUnit\nou: contractors",
        f"dn: ou=groups,{BASE_DN}\nobjectClass: organizationalUnit\nou: groups",
        f"dn: cn=portal,{BASE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: portal\nuserPassword: {_ssha(service_password)}",
    ]
    for _, person in users:
        lines = [
            f"dn: {person.dn}",
            "objectClass: inetOrgPerson",
            _ldif_value("uid", person.uid),
            _ldif_value("cn", person.name),
            _ldif_value("sn", person.name.split()[-1]),
            f"userPassword: {_ssha(person.password)}",
        ]
        if person.email:
            lines.append(f"mail: {person.email}")
        blocks.append("\n".join(lines))
    group_dns: dict[str, str] = {}
    for group in ("portal-admins", "team-eng"):
        dn = f"cn={group},ou=groups,{BASE_DN}"
        group_dns[group] = dn
        members = [u.dn for _, u in users if group in u.groups]
        lines = [f"dn: {dn}", "objectClass: groupOfNames", f"cn: {group}"]
        lines += [_ldif_value("member", m) for m in members]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n", group_dns


def _write_pem_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def _make_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_certificates(tmp: Path) -> tuple[Path, Path, Path, Path]:
    """Write a CA, a server certificate for 127.0.0.1 signed by it, and an unrelated CA."""
    ca_key, ca_cert = _make_ca("portal test LDAP CA")
    _, other_cert = _make_ca("some other CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file, other_ca_file = (
        tmp / "ca.pem",
        tmp / "server.pem",
        tmp / "server.key",
        tmp / "other-ca.pem",
    )
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    other_ca_file.write_bytes(other_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_pem_key(key_file, key)
    return ca_file, cert_file, key_file, other_ca_file


def _slapd_conf(tmp: Path, admin_password: str, ca: Path, cert: Path, key: Path) -> str:
    schemas = "\n".join(f"include {SCHEMA_DIR / name}.schema" for name in ("core", "cosine", "inetorgperson"))
    return f"""{schemas}
pidfile {tmp / "slapd.pid"}
argsfile {tmp / "slapd.args"}
modulepath {MODULE_DIR}
moduleload back_mdb
moduleload memberof
TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}

database mdb
maxsize 16777216
suffix "{BASE_DN}"
rootdn "cn=admin,{BASE_DN}"
rootpw {admin_password}
directory {tmp / "data"}
index objectClass eq
index uid eq
index member eq

overlay memberof

access to attrs=userPassword
    by anonymous auth
    by * none
access to *
    by dn.exact="cn=portal,{BASE_DN}" read
    by users read
    by * none
"""


def _wait_until_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"slapd exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"slapd did not listen on port {port}:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """A running OpenLDAP server loaded with people and groups (see the module docstring)."""
    tmp = tmp_path_factory.mktemp("slapd")
    (tmp / "data").mkdir()
    admin_password = secrets.token_urlsafe(12)
    service_password = "svc-" + secrets.token_urlsafe(12)
    ca, cert, key, other_ca = _make_certificates(tmp)
    conf = tmp / "slapd.conf"
    conf.write_text(_slapd_conf(tmp, admin_password, ca, cert, key))
    port, ldaps_port = free_port(), free_port()
    url, ldaps_url = f"ldap://127.0.0.1:{port}", f"ldaps://127.0.0.1:{ldaps_port}"
    log = tmp / "slapd.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [SLAPD, "-f", str(conf), "-h", f"{url}/ {ldaps_url}/", "-d", "0"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_listening(proc, port, log)
        people = _people()
        ldif, group_dns = _ldif(service_password, people)
        (tmp / "data.ldif").write_text(ldif)
        admin_dn = f"cn=admin,{BASE_DN}"
        loaded = subprocess.run(
            [LDAPADD, "-x", "-H", url, "-D", admin_dn, "-w", admin_password, "-f", str(tmp / "data.ldif")],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if loaded.returncode != 0:
            raise RuntimeError(f"ldapadd failed ({loaded.returncode}): {loaded.stderr}\n{loaded.stdout}")
        users = {u.uid: u for ou, u in people if ou == "people"}
        os.environ[SERVICE_PASSWORD_ENV] = service_password
        yield Slapd(
            url=url,
            ldaps_url=ldaps_url,
            host="127.0.0.1",
            port=port,
            ldaps_port=ldaps_port,
            base_dn=BASE_DN,
            service_dn=f"cn=portal,{BASE_DN}",
            service_password=service_password,
            service_password_ref=f"env:{SERVICE_PASSWORD_ENV}",
            admin_dn=admin_dn,
            admin_password=admin_password,
            ca_file=str(ca),
            other_ca_file=str(other_ca),
            users=users,
            group_dns=group_dns,
        )
    finally:
        os.environ.pop(SERVICE_PASSWORD_ENV, None)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
