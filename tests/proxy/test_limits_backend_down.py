"""With Redis unreachable, calls under limits fail closed (503, clear message) unless
``limits_fail_open`` is set; keys without limits are unaffected."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from portal.app import create_app
from portal.db.models import SubjectType
from tests.conftest import make_settings
from tests.fakes.server import FakeUpstream
from tests.proxy.conftest import Running

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}


@pytest.mark.parametrize("fail_open", [False, True])
async def test_unreachable_redis(
    gw: Running, database_url: str, fake_openai: FakeUpstream, fail_open: bool
) -> None:
    limited, key_id, _ = await gw.new_key()
    await gw.budget(SubjectType.KEY, key_id, "100")
    free, _, _ = await gw.new_key()
    models = [
        {
            "name": "gpt-4o-mini",
            "deployments": [
                {
                    "provider": "openai",
                    "model": "gpt-4o-mini",
                    "api_base": f"{fake_openai.base_url}/v1",
                    "api_key": "env:TEST_OPENAI_KEY",
                }
            ],
        }
    ]
    settings = make_settings(
        database_url, redis_url="redis://127.0.0.1:1/0", models=models, limits_fail_open=fail_open
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        under_limits = await client.post("/v1/chat/completions", json=CHAT, headers={"x-api-key": limited})
        unlimited = await client.post("/v1/chat/completions", json=CHAT, headers={"x-api-key": free})
        ready = await client.get("/readyz")
    assert unlimited.status_code == 200
    assert ready.status_code == 503
    if fail_open:
        assert under_limits.status_code == 200
    else:
        assert under_limits.status_code == 503
        assert "limits cannot be checked" in under_limits.json()["error"]["message"]
