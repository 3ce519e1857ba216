"""Keys declared in the YAML config (the COO-LLM seed's ``api_keys:``): registered hashed at
start-up, with their provider grants and per-minute limits, idempotently across restarts."""

from __future__ import annotations

import uuid

from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.app import create_app
from portal.db.models import ApiKey, Grant
from portal.keys.secrets import hash_key
from tests.conftest import make_settings

MODELS = [
    {"name": "mock-a", "deployments": [{"provider": "mock", "model": "mock-1"}]},
    {"name": "mock-b", "deployments": [{"provider": "mock", "model": "mock-1"}]},
]


async def test_static_keys_from_config(database_url: str, sessions: async_sessionmaker[AsyncSession]) -> None:
    secret = f"sk-static-{uuid.uuid4().hex}"
    keys = [
        {
            "key": secret,
            "allowed_providers": ["mock"],
            "allowed_models": ["mock-a"],
            "limits": {"req_per_min": 2, "tokens_per_min": 50000},
        }
    ]
    settings = make_settings(database_url, models=MODELS, api_keys=keys)
    for _ in range(2):
        async with AsyncTestClient(app=create_app(settings)) as client:
            headers = {"Authorization": f"Bearer {secret}"}
            listed = (await client.get("/v1/models", headers=headers)).json()["data"]
            assert [m["id"] for m in listed] == ["mock-a"]
            body = {"model": "mock-a", "messages": [{"role": "user", "content": "hi"}]}
            denied = await client.post(
                "/v1/chat/completions", headers=headers, json={**body, "model": "mock-b"}
            )
            assert denied.status_code == 403
            codes = [
                (await client.post("/v1/chat/completions", headers=headers, json=body)).status_code
                for _ in range(3)
            ]
            assert codes == [200, 200, 429]
    async with sessions() as session:
        rows = (await session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(secret)))).all()
        assert len(rows) == 1, "registered once across restarts"
        [row] = rows
        assert row.source == "config"
        assert (row.rpm_limit, row.tpm_limit) == (2, 50000)
        assert secret not in row.key_prefix
        grants = await session.scalar(select(func.count()).where(Grant.subject_id == row.id))
    assert grants == 1


async def test_single_shared_key_mode(database_url: str) -> None:
    """The Bedrock seed's backward-compatible single-key mode: one shared key in the config, no tenants;
    it may use every model (``allowed_models`` defaults to ``*``) and carries its metadata."""
    secret = f"sk-shared-{uuid.uuid4().hex}"
    keys = [{"key": secret, "alias": "shared", "metadata": {"department": "engineering"}}]
    settings = make_settings(database_url, models=MODELS, api_keys=keys)
    async with AsyncTestClient(app=create_app(settings)) as client:
        headers = {"Authorization": f"Bearer {secret}"}
        listed = sorted(m["id"] for m in (await client.get("/v1/models", headers=headers)).json()["data"])
        assert {"mock-a", "mock-b"} <= set(listed)
        for model in ("mock-a", "mock-b"):
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            answer = await client.post("/v1/chat/completions", headers=headers, json=body)
            assert answer.status_code == 200, answer.text
        wrong = await client.get("/v1/models", headers={"Authorization": "Bearer sk-not-the-shared-key"})
        assert wrong.status_code == 401
        state = client.app.state.gateway
        principal = await state.keys.lookup(secret)
        assert principal is not None
        assert principal.tenant_id is None
        assert principal.metadata == {"department": "engineering"}
