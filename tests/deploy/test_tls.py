"""HTTPS served by ``portal serve`` itself (``PORTAL_TLS_CERT_FILE``/``PORTAL_TLS_KEY_FILE``): a real process
with a certificate from a throwaway CA answers health, the proxy and the admin listener over TLS, refuses
plain HTTP, and bad TLS settings stop the start with a clear message."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from portal.config import ConfigError, load_settings
from portal.db.migrate import upgrade
from portal.ops import probe
from tests.conftest import TEST_SECRET, free_port
from tests.deploy.processes import ROOT, PortalProcess, start_portal

STATIC_KEY = "sk-tls-test-key-0123456789abcdef"
MASTER = "sk-tls-master-key-0123456789"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A self-signed CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key) PEM files."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("portal test CA"))
        .issuer_name(_name("portal test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_file.chmod(0o600)
    return ca_file, cert_file, key_file


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def https_portal(
    tmp_path_factory: pytest.TempPathFactory, pki: tuple[Path, Path, Path]
) -> Iterator[tuple[PortalProcess, str, ssl.SSLContext]]:
    ca, cert, key = pki
    tmp = tmp_path_factory.mktemp("tls")
    database_url = f"sqlite+aiosqlite:///{tmp / 'portal.db'}"
    upgrade(database_url)
    trust = ssl.create_default_context(cafile=str(ca))
    admin_port = free_port()
    config = {
        "models": [{"name": "mock-model", "deployments": [{"provider": "mock", "model": "mock-1"}]}],
        "api_keys": [{"key": STATIC_KEY, "alias": "tls test"}],
    }
    running = start_portal(
        tmp,
        database_url=database_url,
        config=config,
        env={
            "PORTAL_TLS_CERT_FILE": str(cert),
            "PORTAL_TLS_KEY_FILE": str(key),
            "PORTAL_ADMIN_LISTEN": f"127.0.0.1:{admin_port}",
            "PORTAL_MASTER_KEY": MASTER,
        },
        scheme="https",
        verify=trust,
    )
    yield running, f"https://127.0.0.1:{admin_port}", trust
    assert running.stopped_gracefully(running.stop()), running.output()


def test_health_and_the_proxy_answer_over_verified_https(
    https_portal: tuple[PortalProcess, str, ssl.SSLContext],
) -> None:
    running, _, trust = https_portal
    with httpx.Client(base_url=running.url, verify=trust, trust_env=False, timeout=30) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        answer = client.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {STATIC_KEY}"},
            json={"model": "mock-model", "messages": [{"role": "user", "content": "over TLS"}]},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"]
        assert answer.headers["x-portal-cost"]
        models = client.get("/v1/models", headers={"Authorization": f"Bearer {STATIC_KEY}"})
        assert [m["id"] for m in models.json()["data"]] == ["mock-model"]


def test_the_admin_listener_is_https_too(https_portal: tuple[PortalProcess, str, ssl.SSLContext]) -> None:
    running, admin_url, trust = https_portal
    with httpx.Client(verify=trust, trust_env=False, timeout=30) as client:
        tenants = client.get(f"{admin_url}/api/tenants", headers={"Authorization": f"Bearer {MASTER}"})
        assert tenants.status_code == 200, tenants.text
        assert client.get(f"{running.url}/api/tenants").status_code == 404  # public door: /v1 and health
    with pytest.raises(httpx.TransportError):
        httpx.get(admin_url.replace("https://", "http://") + "/healthz", timeout=5, trust_env=False)


def test_plain_http_and_unknown_cas_are_refused(
    https_portal: tuple[PortalProcess, str, ssl.SSLContext],
) -> None:
    running, _, _ = https_portal
    with pytest.raises(httpx.TransportError):
        httpx.get(running.url.replace("https://", "http://") + "/healthz", timeout=5, trust_env=False)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{running.url}/healthz", timeout=5, trust_env=False)  # the system CAs do not know ours


def test_the_container_probe_speaks_https(https_portal: tuple[PortalProcess, str, ssl.SSLContext]) -> None:
    running, _, _ = https_portal
    port = running.url.rsplit(":", 1)[1]
    assert probe.main({"PORTAL_PORT": port, "PORTAL_TLS_CERT_FILE": "set"}) == 0
    assert probe.main({"PORTAL_PORT": port}) == 1  # plain HTTP to a TLS port


def _tls_problems(**env: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings({"PORTAL_SECRET_KEY": TEST_SECRET, **env})
    return info.value.problems


def test_tls_settings_are_checked_at_start_up(tmp_path: Path, pki: tuple[Path, Path, Path]) -> None:
    ca, cert, key = pki
    assert _tls_problems(PORTAL_TLS_CERT_FILE=str(cert)) == [
        "PORTAL_TLS_CERT_FILE and PORTAL_TLS_KEY_FILE go together: set both or neither"
    ]
    missing = str(tmp_path / "nope.key")
    assert _tls_problems(PORTAL_TLS_CERT_FILE=str(cert), PORTAL_TLS_KEY_FILE=missing) == [
        f"PORTAL_TLS_KEY_FILE: {missing!r} is not a readable file"
    ]
    (mismatch,) = _tls_problems(PORTAL_TLS_CERT_FILE=str(ca), PORTAL_TLS_KEY_FILE=str(key))
    assert "not a PEM certificate and its matching unencrypted private key" in mismatch
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    (bad,) = _tls_problems(PORTAL_TLS_CERT_FILE=str(garbage), PORTAL_TLS_KEY_FILE=str(key))
    assert "garbage.pem" in bad
    settings = load_settings(
        {"PORTAL_SECRET_KEY": TEST_SECRET, "PORTAL_TLS_CERT_FILE": str(cert), "PORTAL_TLS_KEY_FILE": str(key)}
    )
    assert settings.tls
    assert not load_settings({"PORTAL_SECRET_KEY": TEST_SECRET}).tls


def test_serve_refuses_to_start_with_a_missing_certificate(
    tmp_path: Path, pki: tuple[Path, Path, Path]
) -> None:
    _, _, key = pki
    env = {
        "PATH": "/usr/bin:/bin",
        "PORTAL_SECRET_KEY": TEST_SECRET,
        "PORTAL_DATA_DIR": str(tmp_path),
        "PORTAL_TLS_CERT_FILE": str(tmp_path / "missing.pem"),
        "PORTAL_TLS_KEY_FILE": str(key),
    }
    result = subprocess.run(
        [sys.executable, "-m", "portal", "serve", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "PORTAL_TLS_CERT_FILE" in result.stderr
    assert "missing.pem' is not a readable file" in result.stderr
    assert "Traceback" not in result.stderr
