"""OIDC sign-in (portal.auth.oidc) against a real provider: npm ``oidc-provider`` on node, one per session.

Tokens that the provider would never issue (another issuer, audience, nonce, an expired one, a
forged signature) are minted with the provider's REAL signing key, or a stranger's, and fed to
:func:`validate_id_token`; everything else runs the whole code flow through the provider.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from portal.auth import oidc
from portal.auth.identity import DirectoryUnavailable, Identity, LoginFailed
from portal.config import OidcProviderConfig
from tests.conftest import free_port
from tests.fakes.oidc_fixture import ProviderRejected, RunningOidcProvider


@pytest.fixture(autouse=True)
def _fresh_discovery_cache() -> Iterator[None]:
    oidc.clear_cache()
    yield
    oidc.clear_cache()


@pytest.fixture
async def idp_client() -> AsyncIterator[httpx.AsyncClient]:
    """A cookie jar talking to the provider, like one person's browser."""
    async with httpx.AsyncClient(trust_env=False, timeout=10.0) as client:
        yield client


@pytest.fixture
def provider(oidc_provider: RunningOidcProvider) -> OidcProviderConfig:
    return oidc_provider.provider_config("test")


def callback_params(url: str) -> dict[str, str]:
    return dict(httpx.URL(url).params)


async def sign_in(
    oidc_provider: RunningOidcProvider,
    idp_client: httpx.AsyncClient,
    provider: OidcProviderConfig,
    username: str = "alice",
) -> tuple[dict[str, str], dict[str, str]]:
    """Start a login and sign in at the provider: (pending, callback params)."""
    url, pending = await oidc.begin_login(provider, oidc_provider.redirect_uri)
    callback = await oidc_provider.login(idp_client, url, username, f"{username}-password")
    return pending, callback_params(callback)


def discovery(oidc_provider: RunningOidcProvider) -> dict[str, Any]:
    response = httpx.get(f"{oidc_provider.issuer}/.well-known/openid-configuration", trust_env=False)
    return dict(response.json())


# --- the happy paths -------------------------------------------------------------------------------


async def test_begin_login_builds_a_pkce_authorization_request(
    oidc_provider: RunningOidcProvider, provider: OidcProviderConfig
) -> None:
    url, pending = await oidc.begin_login(provider, oidc_provider.redirect_uri)
    other_url, other = await oidc.begin_login(provider, oidc_provider.redirect_uri)

    parsed = httpx.URL(url)
    assert str(parsed.copy_with(query=None)) == f"{oidc_provider.issuer}/auth"
    params = parsed.params
    assert params["response_type"] == "code"
    assert params["client_id"] == "portal"
    assert params["redirect_uri"] == oidc_provider.redirect_uri
    assert params["scope"].split() == ["openid", "email", "profile", "groups"]
    assert params["code_challenge_method"] == "S256"
    assert params["state"] == pending["state"]
    assert params["nonce"] == pending["nonce"]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(pending["code_verifier"].encode()).digest()).rstrip(
        b"="
    )
    assert params["code_challenge"] == challenge.decode()
    assert "code_verifier" not in params
    assert pending["provider"] == "test"
    assert pending["redirect_uri"] == oidc_provider.redirect_uri
    assert abs(float(pending["created_at"]) - time.time()) < 5
    assert all(isinstance(v, str) for v in pending.values())
    json.dumps(pending)
    for name in ("state", "nonce", "code_verifier"):
        assert len(pending[name]) >= 43
        assert pending[name] != other[name]
    assert url != other_url


@pytest.mark.parametrize(
    ("username", "groups", "display_name"),
    [
        ("alice", ("portal-admins",), "Alice Admin"),
        ("bob", ("team-eng",), "Bob Engineer"),
        ("carol", (), "Carol Nogroup"),
    ],
)
async def test_sign_in_returns_the_identity_with_its_groups(
    oidc_provider: RunningOidcProvider,
    idp_client: httpx.AsyncClient,
    provider: OidcProviderConfig,
    username: str,
    groups: tuple[str, ...],
    display_name: str,
) -> None:
    pending, params = await sign_in(oidc_provider, idp_client, provider, username)
    assert set(params) == {"code", "state", "iss"}

    identity = await oidc.complete_login(provider, pending, params)

    assert identity == Identity(
        provider="oidc:test",
        subject=username,
        email=f"{username}@example.org",
        display_name=display_name,
        groups=groups,
        username=username,
    )


async def test_an_unverified_email_is_not_trusted(
    oidc_provider: RunningOidcProvider, idp_client: httpx.AsyncClient, provider: OidcProviderConfig
) -> None:
    pending, params = await sign_in(oidc_provider, idp_client, provider, "dave")
    identity = await oidc.complete_login(provider, pending, params)
    assert identity.email is None
    assert identity.username == "dave"
    assert identity.groups == ("team-eng", "team-ml")


async def test_userinfo_claims_are_merged_when_configured(
    oidc_provider: RunningOidcProvider, idp_client: httpx.AsyncClient
) -> None:
    without = oidc_provider.provider_config("test")
    pending, params = await sign_in(oidc_provider, idp_client, without, "bob")
    plain = await oidc.finish_login(without, pending, params)
    assert "zoneinfo" not in plain.claims

    with_userinfo = oidc_provider.provider_config("test", use_userinfo=True)
    pending, params = await sign_in(oidc_provider, idp_client, with_userinfo, "bob")
    merged = await oidc.finish_login(with_userinfo, pending, params)

    assert merged.claims["zoneinfo"] == "Europe/Paris"  # only the userinfo endpoint says this
    assert merged.claims["iss"] == oidc_provider.issuer
    assert merged.identity.groups == ("team-eng",)
    assert merged.identity.email == "bob@example.org"
    assert merged.id_token.count(".") == 2


async def test_an_unknown_key_id_refetches_the_jwks_once(
    oidc_provider: RunningOidcProvider, idp_client: httpx.AsyncClient, provider: OidcProviderConfig
) -> None:
    pending, params = await sign_in(oidc_provider, idp_client, provider)
    # The cache holds a JWKS from before a key rotation: the provider's current key is not in it.
    stale = oidc._cache[(provider.name, provider.issuer)]
    stale.jwks = {"keys": [RSAKey.generate_key(2048, auto_kid=True).as_dict(private=False)]}

    identity = await oidc.complete_login(provider, pending, params)

    assert identity.subject == "alice"
    assert oidc._cache[(provider.name, provider.issuer)].jwks == oidc_provider.public_jwks


# --- the provider says no --------------------------------------------------------------------------


@pytest.mark.parametrize(("username", "password"), [("alice", "bob-password"), ("mallory", "x")])
async def test_a_wrong_password_is_refused_by_the_provider_and_yields_no_code(
    oidc_provider: RunningOidcProvider,
    idp_client: httpx.AsyncClient,
    provider: OidcProviderConfig,
    username: str,
    password: str,
) -> None:
    url, _pending = await oidc.begin_login(provider, oidc_provider.redirect_uri)
    with pytest.raises(ProviderRejected) as rejected:
        await oidc_provider.login(idp_client, url, username, password)
    assert rejected.value.status_code == 401
    assert "Wrong username or password" in rejected.value.body
    assert "code=" not in rejected.value.body


async def test_a_cancelled_sign_in_is_a_provider_error(
    oidc_provider: RunningOidcProvider, idp_client: httpx.AsyncClient, provider: OidcProviderConfig
) -> None:
    url, pending = await oidc.begin_login(provider, oidc_provider.redirect_uri)
    params = callback_params(await oidc_provider.deny(idp_client, url))
    assert params["error"] == "access_denied"

    with pytest.raises(LoginFailed) as failed:
        await oidc.complete_login(provider, pending, params)
    assert failed.value.reason == "provider_error"
    assert "The person cancelled the sign-in" in failed.value.message


async def test_a_wrong_client_secret_is_a_provider_error(
    oidc_provider: RunningOidcProvider,
    idp_client: httpx.AsyncClient,
    provider: OidcProviderConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pending, params = await sign_in(oidc_provider, idp_client, provider)
    monkeypatch.setenv(oidc_provider.client.secret_env, "not-the-secret")
    with pytest.raises(LoginFailed) as failed:
        await oidc.complete_login(provider, pending, params)
    assert failed.value.reason == "provider_error"
    assert not isinstance(failed.value, DirectoryUnavailable)


async def test_an_unresolved_client_secret_is_a_configuration_error(
    oidc_provider: RunningOidcProvider, idp_client: httpx.AsyncClient
) -> None:
    provider = oidc_provider.provider_config("test", client_secret="env:TEST_OIDC_SECRET_NOT_SET")
    pending, params = await sign_in(oidc_provider, idp_client, provider)
    with pytest.raises(LoginFailed) as failed:
        await oidc.complete_login(provider, pending, params)
    assert failed.value.reason == "misconfigured"
    assert "TEST_OIDC_SECRET_NOT_SET" not in failed.value.message


# --- state ----------------------------------------------------------------------------------------


async def test_a_tampered_state_is_rejected_before_the_code_is_spent(
    oidc_provider: RunningOidcProvider, idp_client: httpx.AsyncClient, provider: OidcProviderConfig
) -> None:
    pending, params = await sign_in(oidc_provider, idp_client, provider)
    for bad in (
        {**params, "state": params["state"][:-1] + "x"},
        {k: v for k, v in params.items() if k != "state"},
    ):
        with pytest.raises(LoginFailed) as failed:
            await oidc.complete_login(provider, pending, bad)
        assert failed.value.reason == "invalid_state"

    # The code was never exchanged: the genuine callback still works.
    assert (await oidc.complete_login(provider, pending, params)).subject == "alice"


async def test_a_replayed_callback_fails(
    oidc_provider: RunningOidcProvider, idp_client: httpx.AsyncClient, provider: OidcProviderConfig
) -> None:
    pending, params = await sign_in(oidc_provider, idp_client, provider)
    await oidc.complete_login(provider, pending, params)

    # The same pending state twice: the provider refuses the spent code.
    with pytest.raises(LoginFailed) as failed:
        await oidc.complete_login(provider, pending, params)
    assert failed.value.reason == "provider_error"

    # An old callback against a newer sign-in attempt: the state does not match.
    _url, newer = await oidc.begin_login(provider, oidc_provider.redirect_uri)
    with pytest.raises(LoginFailed) as failed:
        await oidc.complete_login(provider, newer, params)
    assert failed.value.reason == "invalid_state"


async def test_pending_state_of_another_provider_or_incomplete_is_rejected(
    oidc_provider: RunningOidcProvider, idp_client: httpx.AsyncClient, provider: OidcProviderConfig
) -> None:
    pending, params = await sign_in(oidc_provider, idp_client, provider)
    for bad in ({**pending, "provider": "other"}, {"state": pending["state"]}, {}):
        with pytest.raises(LoginFailed) as failed:
            await oidc.complete_login(provider, bad, params)
        assert failed.value.reason == "invalid_state"


async def test_the_authorization_response_issuer_must_be_the_provider(
    oidc_provider: RunningOidcProvider, idp_client: httpx.AsyncClient, provider: OidcProviderConfig
) -> None:
    pending, params = await sign_in(oidc_provider, idp_client, provider)
    assert params["iss"] == oidc_provider.issuer
    mixed_up = {**params, "iss": "http://127.0.0.1:9"}
    missing = {k: v for k, v in params.items() if k != "iss"}  # the provider advertises RFC 9207
    for bad in (mixed_up, missing):
        with pytest.raises(LoginFailed) as failed:
            await oidc.complete_login(provider, pending, bad)
        assert failed.value.reason == "invalid_state"


# --- the id_token ---------------------------------------------------------------------------------


async def test_a_real_token_with_another_nonce_is_rejected(
    oidc_provider: RunningOidcProvider, idp_client: httpx.AsyncClient, provider: OidcProviderConfig
) -> None:
    pending, params = await sign_in(oidc_provider, idp_client, provider)
    with pytest.raises(LoginFailed) as failed:
        await oidc.complete_login(provider, {**pending, "nonce": "another-nonce"}, params)
    assert failed.value.reason == "invalid_token"


async def test_a_real_token_expires(
    oidc_provider: RunningOidcProvider, idp_client: httpx.AsyncClient, provider: OidcProviderConfig
) -> None:
    pending, params = await sign_in(oidc_provider, idp_client, provider)
    with pytest.raises(LoginFailed) as failed:
        await oidc.complete_login(provider, pending, params, now=time.time() + 3600 + oidc.LEEWAY_S + 5)
    assert failed.value.reason == "invalid_token"
    assert "expired" in failed.value.message


async def test_a_real_token_for_another_client_is_rejected(
    oidc_provider: RunningOidcProvider, idp_client: httpx.AsyncClient, provider: OidcProviderConfig
) -> None:
    other = oidc_provider.provider_config("other", client=oidc_provider.other_client)
    pending, params = await sign_in(oidc_provider, idp_client, other)
    result = await oidc.finish_login(other, pending, params)
    assert result.claims["aud"] == "other"

    metadata = discovery(oidc_provider)
    with pytest.raises(LoginFailed) as failed:
        oidc.validate_id_token(
            provider, metadata, oidc_provider.public_jwks, result.id_token, nonce=pending["nonce"]
        )
    assert failed.value.reason == "invalid_token"
    assert "another application" in failed.value.message


class TestMintedTokens:
    """Tokens the provider would not issue, signed with its real key unless said otherwise."""

    NONCE = "n-0123456789"

    def validate(self, oidc_provider: RunningOidcProvider, token: str, **kwargs: Any) -> dict[str, Any]:
        provider = oidc_provider.provider_config("test")
        kwargs.setdefault("nonce", self.NONCE)
        return oidc.validate_id_token(
            provider, discovery(oidc_provider), oidc_provider.public_jwks, token, **kwargs
        )

    def rejected(self, oidc_provider: RunningOidcProvider, token: str, **kwargs: Any) -> str:
        with pytest.raises(LoginFailed) as failed:
            self.validate(oidc_provider, token, **kwargs)
        assert failed.value.reason == "invalid_token"
        return failed.value.message

    def test_a_well_formed_token_passes(self, oidc_provider: RunningOidcProvider) -> None:
        token = oidc_provider.mint_id_token(oidc_provider.id_token_claims(self.NONCE))
        assert self.validate(oidc_provider, token)["sub"] == "alice"

    @pytest.mark.parametrize("nonce", [None, "n-other", ""])
    def test_missing_or_wrong_nonce(self, oidc_provider: RunningOidcProvider, nonce: str | None) -> None:
        token = oidc_provider.mint_id_token(oidc_provider.id_token_claims(self.NONCE, nonce=nonce))
        assert "sign-in attempt" in self.rejected(oidc_provider, token)

    def test_an_empty_expected_nonce_matches_nothing(self, oidc_provider: RunningOidcProvider) -> None:
        token = oidc_provider.mint_id_token(oidc_provider.id_token_claims(""))
        self.rejected(oidc_provider, token, nonce="")

    @pytest.mark.parametrize("issuer", ["http://127.0.0.1:9", "ISSUER/", "https://evil.example"])
    def test_another_issuer(self, oidc_provider: RunningOidcProvider, issuer: str) -> None:
        claims = oidc_provider.id_token_claims(self.NONCE, iss=issuer.replace("ISSUER", oidc_provider.issuer))
        assert "another provider" in self.rejected(oidc_provider, oidc_provider.mint_id_token(claims))

    @pytest.mark.parametrize(
        ("aud", "azp"),
        [
            ("other", None),
            (["other", "third"], None),
            (["other", "portal"], None),
            (["portal", "other"], "other"),
            ("portal", "other"),
            ([], None),
        ],
    )
    def test_another_audience(self, oidc_provider: RunningOidcProvider, aud: Any, azp: str | None) -> None:
        claims = oidc_provider.id_token_claims(self.NONCE, aud=aud, azp=azp)
        assert "another application" in self.rejected(oidc_provider, oidc_provider.mint_id_token(claims))

    def test_several_audiences_with_our_azp_pass(self, oidc_provider: RunningOidcProvider) -> None:
        claims = oidc_provider.id_token_claims(self.NONCE, aud=["portal", "other"], azp="portal")
        assert self.validate(oidc_provider, oidc_provider.mint_id_token(claims))["azp"] == "portal"

    def test_expired(self, oidc_provider: RunningOidcProvider) -> None:
        now = int(time.time())
        expired = oidc_provider.id_token_claims(self.NONCE, iat=now - 3600, exp=now - 120)
        assert "expired" in self.rejected(oidc_provider, oidc_provider.mint_id_token(expired))
        within_leeway = oidc_provider.id_token_claims(self.NONCE, iat=now - 3600, exp=now - 10)
        self.validate(oidc_provider, oidc_provider.mint_id_token(within_leeway))
        # Times pinned to `now` (a default exp computed a second later made this flaky at a second boundary).
        fresh = oidc_provider.mint_id_token(oidc_provider.id_token_claims(self.NONCE, iat=now, exp=now + 300))
        assert "expired" in self.rejected(oidc_provider, fresh, now=now + 300 + oidc.LEEWAY_S + 1)

    @pytest.mark.parametrize(
        "overrides",
        [
            {"iat": int(time.time()) + 3600, "exp": int(time.time()) + 7200},
            {"nbf": int(time.time()) + 3600},
            {"exp": None},
            {"iat": None},
            {"exp": "soon"},
            {"sub": None},
            {"sub": ""},
        ],
    )
    def test_bad_times_or_subject(
        self, oidc_provider: RunningOidcProvider, overrides: dict[str, Any]
    ) -> None:
        claims = oidc_provider.id_token_claims(self.NONCE, **overrides)  # None drops the claim
        self.rejected(oidc_provider, oidc_provider.mint_id_token(claims))

    def test_signed_with_another_key(self, oidc_provider: RunningOidcProvider) -> None:
        stranger = RSAKey.generate_key(2048, parameters={"kid": str(oidc_provider.signing_key.kid)})
        token = oidc_provider.mint_id_token(oidc_provider.id_token_claims(self.NONCE), key=stranger)
        assert "signature" in self.rejected(oidc_provider, token)

    def test_a_tampered_payload(self, oidc_provider: RunningOidcProvider) -> None:
        token = oidc_provider.mint_id_token(oidc_provider.id_token_claims(self.NONCE))
        header, _payload, signature = token.split(".")
        forged = base64.urlsafe_b64encode(
            json.dumps(oidc_provider.id_token_claims(self.NONCE, groups=["portal-admins", "x"])).encode()
        ).rstrip(b"=")
        self.rejected(oidc_provider, f"{header}.{forged.decode()}.{signature}")

    def test_unsigned_and_hmac_tokens(self, oidc_provider: RunningOidcProvider) -> None:
        claims = oidc_provider.id_token_claims(self.NONCE)

        def segment(data: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

        unsigned = f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims)}."
        assert "algorithm" in self.rejected(oidc_provider, unsigned)
        secret = OctKey.import_key(oidc_provider.client.client_secret)
        hmac_token = jwt.encode({"alg": "HS256"}, claims, secret, algorithms=["HS256"])
        assert "algorithm" in self.rejected(oidc_provider, hmac_token)
        assert "not a signed token" in self.rejected(oidc_provider, "not-a-jwt")


# --- groups ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claim", "value", "groups"),
    [
        ("groups", ["a", "b", "a"], ("a", "b")),
        ("groups", "a, b c,,", ("a", "b", "c")),
        ("groups", None, ()),
        ("groups", {"not": "a list"}, ()),
        ("roles", ["ops", 7, None, True], ("ops", "7")),
        ("realm_access.roles", None, ("kc-admin",)),
    ],
)
def test_groups_come_from_the_configured_claim(
    oidc_provider: RunningOidcProvider, claim: str, value: Any, groups: tuple[str, ...]
) -> None:
    provider = oidc_provider.provider_config("test", groups_claim=claim)
    claims: dict[str, Any] = {"sub": "s", "realm_access": {"roles": ["kc-admin"]}}
    if value is not None:
        claims[claim] = value
    assert oidc.identity_from_claims(provider, claims).groups == groups


# --- an unreachable or broken provider ------------------------------------------------------------


async def test_an_unreachable_provider_is_unavailable(oidc_provider: RunningOidcProvider) -> None:
    provider = oidc_provider.provider_config("gone", issuer=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(DirectoryUnavailable) as failed:
        await oidc.begin_login(provider, oidc_provider.redirect_uri)
    assert failed.value.reason == "unavailable"
    assert "could not be reached" in failed.value.message
    assert await oidc.logout_url(provider, None, oidc_provider.post_logout_redirect_uri) is None


async def test_a_silent_provider_times_out() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    provider = OidcProviderConfig(
        name="slow", issuer=f"http://127.0.0.1:{port}", client_id="c", client_secret="env:X", timeout_s=0.3
    )
    try:
        started = time.monotonic()
        with pytest.raises(DirectoryUnavailable) as failed:
            await oidc.begin_login(provider, "http://127.0.0.1:9/cb")
        assert time.monotonic() - started < 5
        assert "did not answer in time" in failed.value.message
    finally:
        server.close()


async def test_a_provider_answering_nonsense_is_unavailable() -> None:
    async def html(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b"<html>maintenance</html>"
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\nconnection: close\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(html, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    provider = OidcProviderConfig(
        name="junk", issuer=f"http://127.0.0.1:{port}", client_id="c", client_secret="env:X"
    )
    try:
        with pytest.raises(DirectoryUnavailable) as failed:
            await oidc.begin_login(provider, "http://127.0.0.1:9/cb")
        assert "not JSON" in failed.value.message
    finally:
        server.close()


async def test_a_wrong_issuer_url_is_unavailable(oidc_provider: RunningOidcProvider) -> None:
    not_found = oidc_provider.provider_config("test", issuer=f"{oidc_provider.issuer}/nope")
    with pytest.raises(DirectoryUnavailable) as failed:
        await oidc.begin_login(not_found, oidc_provider.redirect_uri)
    assert "HTTP 404" in failed.value.message

    # Discovery works at issuer + "/", but the document names the issuer without the slash.
    trailing_slash = oidc_provider.provider_config("test", issuer=f"{oidc_provider.issuer}/")
    with pytest.raises(DirectoryUnavailable) as failed:
        await oidc.begin_login(trailing_slash, oidc_provider.redirect_uri)
    assert "another issuer" in failed.value.message


# --- logout ---------------------------------------------------------------------------------------


async def test_rp_initiated_logout_signs_out_at_the_provider(
    oidc_provider: RunningOidcProvider, idp_client: httpx.AsyncClient, provider: OidcProviderConfig
) -> None:
    pending, params = await sign_in(oidc_provider, idp_client, provider)
    result = await oidc.finish_login(provider, pending, params)

    url = await oidc.logout_url(provider, result.id_token, oidc_provider.post_logout_redirect_uri)

    assert url is not None
    parsed = httpx.URL(url)
    assert str(parsed.copy_with(query=None)) == discovery(oidc_provider)["end_session_endpoint"]
    assert parsed.params["id_token_hint"] == result.id_token
    assert parsed.params["post_logout_redirect_uri"] == oidc_provider.post_logout_redirect_uri
    assert parsed.params["client_id"] == "portal"

    confirm = await idp_client.get(url)
    assert confirm.status_code == 200
    form = confirm.text
    action = form.split('action="', 1)[1].split('"', 1)[0]
    xsrf = form.split('name="xsrf" value="', 1)[1].split('"', 1)[0]
    done = await idp_client.post(action, data={"xsrf": xsrf, "logout": "yes"})
    assert done.is_redirect
    assert done.headers["location"] == oidc_provider.post_logout_redirect_uri

    # Signed out at the provider: the next sign-in asks for the password again.
    url, _pending = await oidc.begin_login(provider, oidc_provider.redirect_uri)
    again = await idp_client.get(url, follow_redirects=True)
    assert 'name="password"' in again.text


async def test_no_logout_url_without_an_end_session_endpoint(
    oidc_provider: RunningOidcProvider, provider: OidcProviderConfig
) -> None:
    await oidc.begin_login(provider, oidc_provider.redirect_uri)  # fills the cache
    cached = oidc._cache[(provider.name, provider.issuer)]
    cached.metadata = {k: v for k, v in cached.metadata.items() if k != "end_session_endpoint"}
    assert await oidc.logout_url(provider, None, oidc_provider.post_logout_redirect_uri) is None
