"""Model grants: globs, provider restrictions, levels, deny by default; /v1/models and inference agree."""

from __future__ import annotations

import httpx
import pytest

from portal.grants.matcher import LevelGrants, compile_access
from tests.proxy.conftest import Running

SONNET = "anthropic.claude-3-sonnet-20240229-v1:0"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"


def access(
    tenant: list[tuple[str, str]] | None, user: list[tuple[str, str]] | None, key: list[tuple[str, str]]
):  # type: ignore[no-untyped-def]
    return compile_access(
        [
            LevelGrants("tenant", tuple(tenant)) if tenant is not None else None,
            LevelGrants("user", tuple(user)) if user is not None else None,
            LevelGrants("key", tuple(key)),
        ]
    )


def test_deny_by_default() -> None:
    assert not access([], None, []).allows("gpt-4o", "openai")
    assert not access(None, None, []).allows("gpt-4o", "openai")


@pytest.mark.parametrize(
    ("pattern", "model", "allowed"),
    [
        ("*", "anything", True),
        ("anthropic.claude-3-sonnet-*", SONNET, True),
        ("anthropic.claude-3-sonnet-*", HAIKU, False),
        (HAIKU, HAIKU, True),
        (HAIKU, HAIKU + "x", False),
        ("claude-haiku-4-5", "claude-haiku-4-5", True),
    ],
)
def test_glob_patterns(pattern: str, model: str, allowed: bool) -> None:
    assert access([(pattern, "*")], None, []).allows(model, "bedrock") is allowed


def test_provider_restrictions() -> None:
    rules = access([("*", "openai"), ("*", "anthropic")], None, [])
    assert rules.allows("x", "openai")
    assert rules.allows("x", "anthropic")
    assert not rules.allows("x", "gemini")


def test_specific_levels_only_narrow() -> None:
    rules = access([("anthropic.*", "*")], None, [("*", "*")])
    assert rules.allows(SONNET, "bedrock")
    assert not rules.allows("gpt-4o", "openai")
    assert rules.denial("gpt-4o", "openai") == "tenant"
    narrowed = access([("*", "*")], [("gpt-*", "*")], [("gpt-4o-mini", "*")])
    assert narrowed.allows("gpt-4o-mini", "openai")
    assert narrowed.denial("gpt-4o", "openai") == "key"
    assert narrowed.denial("claude", "anthropic") == "user"


def test_key_without_tenant_needs_its_own_grants() -> None:
    assert access(None, None, [("*", "*")]).allows("m", "p")


async def test_models_lists_only_what_the_grant_allows(gw: Running, http: httpx.AsyncClient) -> None:
    secret, _, _ = await gw.new_key(
        grants=[("anthropic.claude-3-sonnet-*", "*"), ("anthropic.claude-3-haiku-*", "*")]
    )
    response = await http.get("/v1/models", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert sorted(m["id"] for m in body["data"]) == [HAIKU, SONNET]
    assert all(m["object"] == "model" for m in body["data"])


async def test_inference_outside_the_grant_is_403_naming_the_model(
    gw: Running, http: httpx.AsyncClient
) -> None:
    secret, _, _ = await gw.new_key(grants=[("anthropic.claude-3-haiku-*", "*")])
    response = await http.post(
        "/v1/chat/completions",
        headers={"x-api-key": secret},
        json={"model": SONNET, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 403
    assert SONNET in response.json()["error"]["message"]


async def test_unknown_model_is_404_model_not_found(gw: Running, http: httpx.AsyncClient) -> None:
    secret, _, _ = await gw.new_key()
    response = await http.post(
        "/v1/chat/completions",
        headers={"x-api-key": secret},
        json={"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


async def test_provider_restriction_applies_to_inference_and_models(
    gw: Running, http: httpx.AsyncClient
) -> None:
    secret, _, _ = await gw.new_key(grants=[("*", "openai"), ("*", "mock")])
    headers = {"x-api-key": secret}
    listed = {m["id"] for m in (await http.get("/v1/models", headers=headers)).json()["data"]}
    assert "gpt-4o-mini" in listed
    assert "mock-model" in listed
    assert "claude-sonnet" not in listed
    denied = await http.post(
        "/v1/chat/completions",
        headers=headers,
        json={"model": "claude-sonnet", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert denied.status_code == 403


async def test_tenant_without_grants_can_use_nothing(gw: Running, http: httpx.AsyncClient) -> None:
    secret, _, _ = await gw.new_key(grants=[])
    headers = {"x-api-key": secret}
    assert (await http.get("/v1/models", headers=headers)).json()["data"] == []
    response = await http.post(
        "/v1/chat/completions",
        headers=headers,
        json={"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 403
