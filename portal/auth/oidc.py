"""OpenID Connect sign-in: the relying-party side of the authorization code flow with PKCE.

Owns, per configured provider: discovery (``<issuer>/.well-known/openid-configuration``) and the
provider's JWKS, cached together and refetched once when a token names an unknown key; the
authorization request (:func:`begin_login`: state, nonce, PKCE S256); the callback
(:func:`complete_login` / :func:`finish_login`: state, provider errors, the code exchange with
``client_secret_basic``, id_token validation, optional userinfo, groups); id_token validation on its
own (:func:`validate_id_token`); and the RP-initiated logout URL (:func:`logout_url`).

It does not store anything: the pending dict returned by :func:`begin_login` is kept server-side by
the caller (the anonymous session) and handed back, once, to :func:`complete_login`.

Errors, all subclasses of :class:`~portal.auth.identity.LoginFailed` with a message safe to show:

- ``invalid_state``: the callback's ``state`` (or RFC 9207 ``iss``) does not belong to the pending login;
- ``provider_error``: the provider answered with an OAuth error (``error=access_denied``, a refused code);
- ``invalid_token``: the id_token failed a check (signature, ``iss``, ``aud``/``azp``, ``exp``/``iat``,
  ``nonce``, ``sub``) or userinfo named another subject;
- ``misconfigured``: the client secret reference does not resolve;
- :class:`~portal.auth.identity.DirectoryUnavailable` (``unavailable``): the provider could not be
  reached, timed out, or answered something that is not the expected JSON.

The signing algorithms accepted are asymmetric ones only (never ``none`` or HMAC); JOSE is done with
``joserfc`` (authlib's own ``authlib.jose`` and its httpx integration are deprecated in authlib 1.9),
PKCE and token generation with authlib, HTTP with httpx.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet

from portal.auth.identity import DirectoryUnavailable, Identity, LoginFailed
from portal.config import OidcProviderConfig

__all__ = [
    "ALLOWED_ALGORITHMS",
    "LEEWAY_S",
    "OidcLogin",
    "begin_login",
    "clear_cache",
    "complete_login",
    "finish_login",
    "identity_from_claims",
    "logout_url",
    "resolve_secret",
    "validate_id_token",
]

log = logging.getLogger(__name__)

ALLOWED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
LEEWAY_S = 60.0
"""Clock skew tolerated on ``exp``, ``iat`` and ``nbf``."""
CACHE_TTL_S = 3600.0
"""Discovery and JWKS are refetched after this long (and the JWKS at once on an unknown ``kid``)."""
_MAX_RESPONSE_BYTES = 1_000_000


@dataclass(slots=True)
class _Discovered:
    metadata: dict[str, Any]
    jwks: dict[str, Any]
    fetched_at: float


_cache: dict[tuple[str, str], _Discovered] = {}


@dataclass(frozen=True, slots=True)
class OidcLogin:
    """A completed OIDC sign-in: who, plus the raw id_token (the ``id_token_hint`` for logout)."""

    identity: Identity
    id_token: str
    claims: dict[str, Any]


def clear_cache() -> None:
    """Forget every provider's discovery document and JWKS."""
    _cache.clear()


def resolve_secret(reference: str) -> str | None:
    """The value of an ``env:NAME`` secret reference, or ``None`` when unset or not a reference."""
    if not reference.startswith("env:"):
        return None
    value = os.environ.get(reference.removeprefix("env:"))
    return value or None


def _label(provider: OidcProviderConfig) -> str:
    return provider.label or provider.name


async def begin_login(provider: OidcProviderConfig, redirect_uri: str) -> tuple[str, dict[str, str]]:
    """The provider's authorization URL for a new sign-in and the pending state to keep server-side."""
    discovered = await _discover(provider)
    endpoint = discovered.metadata["authorization_endpoint"]
    state = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(32)
    code_verifier = secrets.token_urlsafe(64)
    scopes = list(dict.fromkeys(["openid", *provider.scopes]))
    params = {
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(scopes),
        "state": state,
        "nonce": nonce,
        "code_challenge": create_s256_code_challenge(code_verifier),
        "code_challenge_method": "S256",
    }
    url = str(httpx.URL(endpoint).copy_merge_params(params))
    pending = {
        "provider": provider.name,
        "state": state,
        "nonce": nonce,
        "code_verifier": code_verifier,
        "redirect_uri": redirect_uri,
        "created_at": f"{time.time():.3f}",
    }
    return url, pending


async def complete_login(
    provider: OidcProviderConfig,
    pending: dict[str, str],
    params: Mapping[str, str],
    *,
    now: float | None = None,
) -> Identity:
    """Check the provider's callback against the pending sign-in; the person it vouches for."""
    return (await finish_login(provider, pending, params, now=now)).identity


async def finish_login(
    provider: OidcProviderConfig,
    pending: dict[str, str],
    params: Mapping[str, str],
    *,
    now: float | None = None,
) -> OidcLogin:
    """:func:`complete_login`, also returning the raw id_token and the merged claims."""
    label = _label(provider)
    _check_state(provider, pending, params)
    if "error" in params:
        description = params.get("error_description") or params["error"]
        raise LoginFailed(f"{label} refused the sign-in: {description}", reason="provider_error")
    code = params.get("code")
    if not code:
        raise LoginFailed(f"{label} returned no authorization code.", reason="provider_error")

    discovered = await _discover(provider)
    if "iss" in params and params["iss"] != provider.issuer:
        raise LoginFailed(
            f"The answer did not come from {label}: please sign in again.", reason="invalid_state"
        )
    if "iss" not in params and discovered.metadata.get("authorization_response_iss_parameter_supported"):
        raise LoginFailed(
            f"The answer from {label} is incomplete: please sign in again.", reason="invalid_state"
        )

    tokens = await _exchange_code(provider, discovered, code, pending)
    id_token = tokens.get("id_token")
    if not isinstance(id_token, str) or not id_token:
        raise LoginFailed(f"{label} returned no identity token.", reason="invalid_token")
    await _ensure_signing_key(provider, discovered, id_token)
    claims = validate_id_token(
        provider, discovered.metadata, discovered.jwks, id_token, nonce=pending["nonce"], now=now
    )
    if provider.use_userinfo:
        userinfo = await _userinfo(provider, discovered, tokens)
        if userinfo.get("sub") != claims["sub"]:
            raise LoginFailed(
                f"{label} described another person than the one who signed in.", reason="invalid_token"
            )
        claims = {**claims, **{k: v for k, v in userinfo.items() if k not in _PROTECTED_CLAIMS}}
    return OidcLogin(identity=identity_from_claims(provider, claims), id_token=id_token, claims=claims)


_PROTECTED_CLAIMS = frozenset(
    {"iss", "aud", "azp", "exp", "iat", "nbf", "nonce", "sub", "auth_time", "at_hash"}
)


def _check_state(provider: OidcProviderConfig, pending: Mapping[str, str], params: Mapping[str, str]) -> None:
    expected = pending.get("state", "")
    received = params.get("state", "")
    if (
        not expected
        or not received
        or pending.get("provider") != provider.name
        or not pending.get("nonce")
        or not pending.get("code_verifier")
        or not hmac.compare_digest(expected.encode(), received.encode())
    ):
        raise LoginFailed(
            "This sign-in attempt is not the one that was started here, or it expired: please sign in again.",
            reason="invalid_state",
        )


def validate_id_token(
    provider: OidcProviderConfig,
    metadata: Mapping[str, Any],
    jwks: Mapping[str, Any],
    token: str,
    *,
    nonce: str,
    now: float | None = None,
) -> dict[str, Any]:
    """The claims of ``token`` once its signature, issuer, audience, times and nonce all check out."""
    label = _label(provider)

    def reject(why: str) -> LoginFailed:
        return LoginFailed(f"The identity token from {label} was rejected: {why}.", reason="invalid_token")

    algorithms = _algorithms(metadata)
    try:
        header = jws.extract_compact(token.encode()).headers()
    except (JoseError, ValueError) as exc:
        raise reject("it is not a signed token") from exc
    alg = header.get("alg")
    if alg not in algorithms:
        raise reject(f"its signing algorithm {alg!r} is not accepted")
    claims = _verified_claims(token, header, jwks, algorithms)
    if claims is None:
        raise reject("its signature does not match the provider's keys")

    current = time.time() if now is None else now
    if claims.get("iss") != provider.issuer:
        raise reject("it was issued by another provider")
    audiences = claims.get("aud")
    audience_list = [audiences] if isinstance(audiences, str) else audiences
    if not isinstance(audience_list, list) or provider.client_id not in audience_list:
        raise reject("it was issued for another application")
    azp = claims.get("azp")
    if (len(audience_list) > 1 or azp is not None) and azp != provider.client_id:
        raise reject("it was issued for another application")
    exp = _number(claims.get("exp"))
    if exp is None or current > exp + LEEWAY_S:
        raise reject("it has expired")
    iat = _number(claims.get("iat"))
    if iat is None:
        raise reject("it has no issue time")
    if iat > current + LEEWAY_S:
        raise reject("it was issued in the future")
    if "nbf" in claims:
        nbf = _number(claims["nbf"])
        if nbf is None or nbf > current + LEEWAY_S:
            raise reject("it is not valid yet")
    received_nonce = claims.get("nonce")
    if (
        not isinstance(received_nonce, str)
        or not nonce
        or not hmac.compare_digest(received_nonce.encode(), nonce.encode())
    ):
        raise reject("it does not belong to this sign-in attempt")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise reject("it names no subject")
    return claims


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _algorithms(metadata: Mapping[str, Any]) -> list[str]:
    advertised = metadata.get("id_token_signing_alg_values_supported")
    if not isinstance(advertised, list):
        return ["RS256"]
    return [alg for alg in advertised if alg in ALLOWED_ALGORITHMS]


def _verified_claims(
    token: str, header: Mapping[str, Any], jwks: Mapping[str, Any], algorithms: list[str]
) -> dict[str, Any] | None:
    for key in _candidate_keys(jwks, header):
        try:
            return dict(jwt.decode(token, key, algorithms=algorithms).claims)
        except (JoseError, ValueError):
            continue
    return None


def _candidate_keys(jwks: Mapping[str, Any], header: Mapping[str, Any]) -> list[Key]:
    raw_keys = jwks.get("keys")
    if not isinstance(raw_keys, list):
        return []
    kid = header.get("kid")
    keys: list[Key] = []
    for raw in raw_keys:
        if not isinstance(raw, dict) or raw.get("use", "sig") != "sig":
            continue
        if kid is not None and raw.get("kid") != kid:
            continue
        try:
            keys.extend(KeySet.import_key_set({"keys": [raw]}).keys)
        except (JoseError, ValueError, TypeError, KeyError):
            continue
    return keys


def _kids(jwks: Mapping[str, Any]) -> set[str]:
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        return set()
    return {k["kid"] for k in keys if isinstance(k, dict) and isinstance(k.get("kid"), str)}


async def _ensure_signing_key(provider: OidcProviderConfig, discovered: _Discovered, token: str) -> None:
    """Refetch the JWKS once when the token names a key the cached set does not have (key rotation)."""
    try:
        kid = jws.extract_compact(token.encode()).headers().get("kid")
    except (JoseError, ValueError):
        return
    if kid is None or kid in _kids(discovered.jwks):
        return
    async with _client(provider) as client:
        discovered.jwks = await _get_json(client, provider, discovered.metadata["jwks_uri"], "keys")


def identity_from_claims(provider: OidcProviderConfig, claims: Mapping[str, Any]) -> Identity:
    """The :class:`Identity` validated claims describe (an unverified email is dropped)."""
    email = claims.get("email")
    if not isinstance(email, str) or not email or claims.get("email_verified") is False:
        email = None
    preferred = claims.get("preferred_username")
    username = preferred if isinstance(preferred, str) and preferred else email
    name = claims.get("name")
    display_name = name if isinstance(name, str) and name else (username or "")
    return Identity(
        provider=f"oidc:{provider.name}",
        subject=str(claims["sub"]),
        email=email,
        display_name=display_name,
        groups=_groups(claims, provider.groups_claim),
        username=username,
    )


def _groups(claims: Mapping[str, Any], claim: str) -> tuple[str, ...]:
    value: Any = claims.get(claim)
    if value is None and "." in claim:
        value = claims
        for part in claim.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        items: list[Any] = re.split(r"[\s,]+", value)
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        return ()
    groups = (
        str(item).strip() for item in items if isinstance(item, str | int) and not isinstance(item, bool)
    )
    return tuple(dict.fromkeys(g for g in groups if g))


async def logout_url(
    provider: OidcProviderConfig, id_token_hint: str | None, post_logout_redirect_uri: str
) -> str | None:
    """The provider's RP-initiated logout URL, or ``None`` when it has none (or cannot be reached)."""
    try:
        discovered = await _discover(provider)
    except LoginFailed as exc:
        log.warning("oidc %s: no logout URL: %s", provider.name, exc.message)
        return None
    endpoint = discovered.metadata.get("end_session_endpoint")
    if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
        return None
    params = {"client_id": provider.client_id, "post_logout_redirect_uri": post_logout_redirect_uri}
    if id_token_hint:
        params["id_token_hint"] = id_token_hint
    return str(httpx.URL(endpoint).copy_merge_params(params))


def _client(provider: OidcProviderConfig) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=provider.timeout_s, trust_env=False, follow_redirects=False)


async def _discover(provider: OidcProviderConfig) -> _Discovered:
    key = (provider.name, provider.issuer)
    cached = _cache.get(key)
    if cached is not None and time.monotonic() - cached.fetched_at < CACHE_TTL_S:
        return cached
    url = provider.issuer.rstrip("/") + "/.well-known/openid-configuration"
    async with _client(provider) as client:
        metadata = await _get_json(client, provider, url, "configuration")
        if metadata.get("issuer") != provider.issuer:
            log.warning(
                "oidc %s: discovery names issuer %r, configured %r",
                provider.name,
                metadata.get("issuer"),
                provider.issuer,
            )
            raise DirectoryUnavailable(
                f"Sign-in with {_label(provider)} is misconfigured: the provider names another issuer."
            )
        for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = metadata.get(field)
            if not isinstance(value, str) or not value.startswith(("https://", "http://")):
                raise DirectoryUnavailable(
                    f"Sign-in with {_label(provider)} is unavailable: "
                    f"the provider's configuration lacks {field}."
                )
        jwks = await _get_json(client, provider, metadata["jwks_uri"], "keys")
    discovered = _Discovered(metadata=metadata, jwks=jwks, fetched_at=time.monotonic())
    _cache[key] = discovered
    return discovered


def _unavailable(provider: OidcProviderConfig, why: str) -> DirectoryUnavailable:
    return DirectoryUnavailable(f"Sign-in with {_label(provider)} is unavailable: {why}. Try again later.")


async def _get_json(
    client: httpx.AsyncClient, provider: OidcProviderConfig, url: str, what: str, *, bearer: str | None = None
) -> dict[str, Any]:
    headers = {"Accept": "application/json"}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    try:
        response = await client.get(url, headers=headers)
    except httpx.TimeoutException as exc:
        log.warning("oidc %s: %s from %s timed out: %r", provider.name, what, url, exc)
        raise _unavailable(provider, "the provider did not answer in time") from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        log.warning("oidc %s: %s from %s failed: %r", provider.name, what, url, exc)
        raise _unavailable(provider, "the provider could not be reached") from exc
    if response.status_code != 200:
        log.warning("oidc %s: %s from %s: HTTP %s", provider.name, what, url, response.status_code)
        raise _unavailable(provider, f"the provider answered HTTP {response.status_code}")
    return _json_object(provider, response, what)


def _json_object(provider: OidcProviderConfig, response: httpx.Response, what: str) -> dict[str, Any]:
    if len(response.content) > _MAX_RESPONSE_BYTES:
        raise _unavailable(provider, "the provider's answer is too large")
    try:
        data = response.json()
    except ValueError as exc:
        log.warning("oidc %s: %s from %s is not JSON", provider.name, what, response.url)
        raise _unavailable(provider, "the provider's answer is not JSON") from exc
    if not isinstance(data, dict):
        raise _unavailable(provider, "the provider's answer is not a JSON object")
    return data


async def _exchange_code(
    provider: OidcProviderConfig, discovered: _Discovered, code: str, pending: Mapping[str, str]
) -> dict[str, Any]:
    label = _label(provider)
    secret = resolve_secret(provider.client_secret)
    if secret is None:
        log.error("oidc %s: client_secret %r does not resolve", provider.name, provider.client_secret)
        raise LoginFailed(f"Sign-in with {label} is not configured completely.", reason="misconfigured")
    auth = httpx.BasicAuth(quote_plus(provider.client_id), quote_plus(secret))
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": pending.get("redirect_uri", ""),
        "code_verifier": pending["code_verifier"],
    }
    url = discovered.metadata["token_endpoint"]
    async with _client(provider) as client:
        try:
            response = await client.post(url, data=form, auth=auth, headers={"Accept": "application/json"})
        except httpx.TimeoutException as exc:
            log.warning("oidc %s: token request timed out: %r", provider.name, exc)
            raise _unavailable(provider, "the provider did not answer in time") from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            log.warning("oidc %s: token request failed: %r", provider.name, exc)
            raise _unavailable(provider, "the provider could not be reached") from exc
    if response.status_code in {400, 401, 403}:
        body = _json_object(provider, response, "token error")
        error = body.get("error_description") or body.get("error") or f"HTTP {response.status_code}"
        log.warning("oidc %s: token request refused: %s %s", provider.name, body.get("error"), error)
        raise LoginFailed(f"{label} refused the sign-in: {error}", reason="provider_error")
    if response.status_code != 200:
        log.warning("oidc %s: token request: HTTP %s", provider.name, response.status_code)
        raise _unavailable(provider, f"the provider answered HTTP {response.status_code}")
    return _json_object(provider, response, "tokens")


async def _userinfo(
    provider: OidcProviderConfig, discovered: _Discovered, tokens: Mapping[str, Any]
) -> dict[str, Any]:
    endpoint = discovered.metadata.get("userinfo_endpoint")
    access_token = tokens.get("access_token")
    if not isinstance(endpoint, str) or not isinstance(access_token, str):
        raise _unavailable(provider, "the provider offers no userinfo for this sign-in")
    async with _client(provider) as client:
        return await _get_json(client, provider, endpoint, "userinfo", bearer=access_token)
