"""Pytest fixture ``oidc_provider``: a real OpenID provider (npm ``oidc-provider``) for the session.

Runs ``tests/fixtures/oidc/provider.mjs`` on node, on a free port of 127.0.0.1 (``npm ci`` from the
committed lock first, when ``node_modules`` is missing or stale). The signing key is generated here
and handed to the provider, so tests can mint deliberately bad tokens signed with the REAL key
(:meth:`RunningOidcProvider.mint_id_token`). Two confidential clients (``client_secret_basic``, PKCE
required): ``portal`` and ``other`` (for wrong-audience tests). Accounts: alice (portal-admins),
bob (team-eng), carol (no groups), dave (two groups, email not verified); each password is
``<name>-password``; a wrong one gets a 401 from the provider's login form.

Registered redirect URIs, for both clients: ``http://testserver.local/auth/oidc/test/callback``
(Litestar's test client) and ``http://127.0.0.1:9/auth/oidc/test/callback``; post-logout
``http://testserver.local/login`` and ``http://127.0.0.1:9/login``. Others (a live server's port)
are added at run time with :meth:`RunningOidcProvider.allow`.

Typical use::

    provider = oidc_provider.provider_config("test")          # an OidcProviderConfig
    url, pending = await begin_login(provider, oidc_provider.redirect_uri)
    async with httpx.AsyncClient() as browser:
        callback = await oidc_provider.login(browser, url, "alice", "alice-password")
    params = dict(httpx.URL(callback).params)                # code, state, iss
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from portal.config import OidcProviderConfig
from tests.conftest import free_port

__all__ = [
    "ACCOUNTS",
    "OidcAccount",
    "OidcClient",
    "ProviderRejected",
    "RunningOidcProvider",
    "oidc_provider",
]

FIXTURE_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "oidc"
REDIRECT_URIS = (
    "http://testserver.local/auth/oidc/test/callback",
    "http://127.0.0.1:9/auth/oidc/test/callback",
)
POST_LOGOUT_REDIRECT_URIS = ("http://testserver.local/login", "http://127.0.0.1:9/login")
START_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class OidcAccount:
    username: str
    password: str
    email: str
    name: str
    groups: tuple[str, ...]
    email_verified: bool = True


ACCOUNTS: dict[str, OidcAccount] = {
    a.username: a
    for a in (
        OidcAccount("alice", "alice-password", "alice@example.org", "Alice Admin", ("portal-admins",)),
        OidcAccount("bob", "bob-password", "bob@example.org", "Bob Engineer", ("team-eng",)),
        OidcAccount("carol", "carol-password", "carol@example.org", "Carol Nogroup", ()),
        OidcAccount(
            "dave", "dave-password", "dave@example.org", "Dave Unverified", ("team-eng", "team-ml"), False
        ),
    )
}


@dataclass(frozen=True, slots=True)
class OidcClient:
    client_id: str
    client_secret: str
    secret_env: str
    """The environment variable holding the secret, for ``client_secret: env:NAME``."""


class ProviderRejected(Exception):
    """The provider answered the login form (or the authorization request) with an error page."""

    def __init__(self, status_code: int, body: str) -> None:
        super().__init__(f"the OIDC provider answered HTTP {status_code}")
        self.status_code = status_code
        self.body = body


@dataclass
class RunningOidcProvider:
    """The provider as the tests see it: where it is, its clients, accounts and signing key."""

    issuer: str
    port: int
    client: OidcClient
    other_client: OidcClient
    accounts: dict[str, OidcAccount]
    signing_key: RSAKey
    admin_token: str
    redirect_uri: str = REDIRECT_URIS[0]
    post_logout_redirect_uri: str = POST_LOGOUT_REDIRECT_URIS[0]
    log_path: Path | None = None

    @property
    def private_jwks(self) -> dict[str, Any]:
        """The provider's signing JWKS, private parts included."""
        return {"keys": [self.signing_key.as_dict(private=True)]}

    @property
    def public_jwks(self) -> dict[str, Any]:
        return {"keys": [self.signing_key.as_dict(private=False)]}

    def provider_config(
        self, name: str = "test", *, client: OidcClient | None = None, **overrides: Any
    ) -> OidcProviderConfig:
        """An :class:`OidcProviderConfig` for this provider (``groups`` scope requested)."""
        chosen = client or self.client
        values: dict[str, Any] = {
            "name": name,
            "issuer": self.issuer,
            "client_id": chosen.client_id,
            "client_secret": f"env:{chosen.secret_env}",
            "label": "Test IdP",
            "scopes": ["openid", "email", "profile", "groups"],
            "timeout_s": 5.0,
        }
        values.update(overrides)
        return OidcProviderConfig(**values)

    def allow(
        self,
        client_id: str,
        redirect_uris: tuple[str, ...] = (),
        post_logout_redirect_uris: tuple[str, ...] = (),
    ) -> None:
        """Register more redirect (and post-logout) URIs for a client, at run time."""
        form = {
            "client_id": client_id,
            "redirect_uri": list(redirect_uris),
            "post_logout_redirect_uri": list(post_logout_redirect_uris),
        }
        response = httpx.post(
            f"{self.issuer}/__fixture/allow",
            data=form,
            headers={"x-fixture-token": self.admin_token},
            trust_env=False,
        )
        response.raise_for_status()

    async def login(
        self, http_client: httpx.AsyncClient, authorize_url: str, username: str, password: str
    ) -> str:
        """Sign in at the provider like a browser; the URL it finally sends the browser to (the
        ``redirect_uri`` with ``code``/``state`` or ``error``), not requested. Raises
        :class:`ProviderRejected` when the provider answers with an error page (a wrong password: 401)."""
        return await self._drive(http_client, authorize_url, {"username": username, "password": password})

    async def deny(self, http_client: httpx.AsyncClient, authorize_url: str) -> str:
        """Cancel at the provider's login form; the redirect URL carries ``error=access_denied``."""
        return await self._drive(http_client, authorize_url, None)

    async def _drive(
        self, http_client: httpx.AsyncClient, authorize_url: str, credentials: Mapping[str, str] | None
    ) -> str:
        redirect_uri = httpx.URL(authorize_url).params.get("redirect_uri") or ""
        response = await http_client.get(authorize_url, follow_redirects=False)
        for _ in range(20):
            if response.is_redirect:
                location = str(response.url.join(response.headers["location"]))
                if redirect_uri and location.startswith(redirect_uri):
                    return location
                response = await http_client.get(location, follow_redirects=False)
                continue
            if response.status_code != 200:
                raise ProviderRejected(response.status_code, response.text)
            action = _form_action(response.text, "login" if credentials is not None else "abort")
            if action is None:
                raise ProviderRejected(response.status_code, response.text)
            response = await http_client.post(
                str(response.url.join(action)), data=dict(credentials or {}), follow_redirects=False
            )
        raise AssertionError("the OIDC provider kept redirecting")

    def id_token_claims(self, nonce: str, /, **overrides: Any) -> dict[str, Any]:
        """Valid id_token claims for the ``portal`` client and alice; override any (``None`` drops it)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": "alice",
            "aud": self.client.client_id,
            "exp": now + 300,
            "iat": now,
            "nonce": nonce,
            "email": "alice@example.org",
            "email_verified": True,
            "name": "Alice Admin",
            "preferred_username": "alice",
            "groups": ["portal-admins"],
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def mint_id_token(
        self,
        claims: Mapping[str, Any],
        *,
        key: RSAKey | None = None,
        header: Mapping[str, Any] | None = None,
    ) -> str:
        """A JWT with these claims, signed RS256 with the provider's real key unless ``key`` is given."""
        signing_key = key or self.signing_key
        full_header = {"alg": "RS256", "kid": signing_key.kid, "typ": "JWT", **(header or {})}
        return jwt.encode(full_header, dict(claims), signing_key, algorithms=[full_header["alg"]])


def _form_action(html: str, action: str) -> str | None:
    match = re.search(rf'<form[^>]*action="([^"]*/{action})"', html)
    return match.group(1) if match else None


def _ensure_node_modules() -> None:
    """``npm ci`` in the fixture directory unless the locked oidc-provider is already installed."""
    lock = json.loads((FIXTURE_DIR / "package-lock.json").read_text())
    wanted = lock["packages"]["node_modules/oidc-provider"]["version"]
    installed = FIXTURE_DIR / "node_modules" / "oidc-provider" / "package.json"

    def current() -> bool:
        return installed.exists() and json.loads(installed.read_text()).get("version") == wanted

    if current():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is missing: run tests/bootstrap.sh (installs nodejs and npm)")
    lock_path = Path(tempfile.gettempdir()) / "portal-oidc-fixture-npm.lock"
    with lock_path.open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            if current():
                return
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=FIXTURE_DIR,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if result.returncode != 0:
                raise RuntimeError(f"npm ci failed in {FIXTURE_DIR}:\n{result.stdout}\n{result.stderr}")
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _client_metadata(client: OidcClient) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "redirect_uris": list(REDIRECT_URIS),
        "post_logout_redirect_uris": list(POST_LOGOUT_REDIRECT_URIS),
    }


def start_provider(log_dir: Path) -> tuple[RunningOidcProvider, subprocess.Popen[bytes]]:
    """Start node with the provider; return once its discovery document answers."""
    _ensure_node_modules()
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is missing: run tests/bootstrap.sh (installs nodejs)")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    clients = (
        OidcClient("portal", secrets.token_urlsafe(24), "TEST_OIDC_PORTAL_SECRET"),
        OidcClient("other", secrets.token_urlsafe(24), "TEST_OIDC_OTHER_SECRET"),
    )
    signing_key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, auto_kid=True)
    admin_token = secrets.token_urlsafe(24)
    config = {
        "port": port,
        "issuer": issuer,
        "jwks": {"keys": [signing_key.as_dict(private=True)]},
        "cookieKeys": [secrets.token_urlsafe(32)],
        "adminToken": admin_token,
        "clients": [_client_metadata(c) for c in clients],
        "accounts": {
            a.username: {
                "password": a.password,
                "email": a.email,
                "email_verified": a.email_verified,
                "name": a.name,
                "groups": list(a.groups),
            }
            for a in ACCOUNTS.values()
        },
    }
    log_path = log_dir / "oidc-provider.log"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "NODE_ENV": "test",
        "OIDC_FIXTURE_CONFIG": json.dumps(config),
    }
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [node, "provider.mjs"], cwd=FIXTURE_DIR, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    provider = RunningOidcProvider(
        issuer=issuer,
        port=port,
        client=clients[0],
        other_client=clients[1],
        accounts=dict(ACCOUNTS),
        signing_key=signing_key,
        admin_token=admin_token,
        log_path=log_path,
    )
    try:
        _wait_for_discovery(process, issuer, log_path)
    except BaseException:
        _stop(process)
        raise
    return provider, process


def _wait_for_discovery(process: subprocess.Popen[bytes], issuer: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    url = f"{issuer}/.well-known/openid-configuration"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the OIDC provider exited ({process.returncode}):\n{log_path.read_text()}")
        try:
            if httpx.get(url, timeout=1.0, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the OIDC provider did not start within {START_TIMEOUT_S}s:\n{log_path.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningOidcProvider]:
    """The real OIDC provider for the whole session; client secrets are set in the environment
    (``TEST_OIDC_PORTAL_SECRET``, ``TEST_OIDC_OTHER_SECRET``) while it runs."""
    provider, process = start_provider(tmp_path_factory.mktemp("oidc"))
    saved = {c.secret_env: os.environ.get(c.secret_env) for c in (provider.client, provider.other_client)}
    for c in (provider.client, provider.other_client):
        os.environ[c.secret_env] = c.client_secret
    try:
        yield provider
    finally:
        _stop(process)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
