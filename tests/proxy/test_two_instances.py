"""Two gateway processes sharing the database and Redis: rate limits, budgets and key revocations
hold across both. Instance A runs in the test's event loop, instance B is a real ``portal serve``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import msgspec
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.app import create_app
from portal.db.models import ApiKey, KeyStatus, SubjectType
from portal.keys.secrets import hash_key
from portal.proxy.tokens import estimate_prompt_tokens
from tests.conftest import REDIS_URL, TEST_SECRET, free_port, make_settings
from tests.fakes.server import Behaviour, FakeUpstream
from tests.proxy.conftest import Running, model_list, serve

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Pair:
    a: Running
    b_url: str


@pytest.fixture(scope="module")
def instance_b(
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    fake_openai_server: FakeUpstream,
    fake_anthropic_server: FakeUpstream,
    fake_gemini_server: FakeUpstream,
    fake_bedrock_server: FakeUpstream,
) -> Iterator[str]:
    models = model_list(fake_openai_server, fake_anthropic_server, fake_gemini_server, fake_bedrock_server)
    config = tmp_path_factory.mktemp("b") / "portal.yaml"
    config.write_bytes(msgspec.json.encode({"models": models}))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update(
        PORTAL_DATABASE_URL=database_url,
        PORTAL_SECRET_KEY=TEST_SECRET,
        PORTAL_REDIS_URL=REDIS_URL,
        PORTAL_CONFIG=str(config),
        PORTAL_LOG_LEVEL="warning",
        PORTAL_DATA_DIR=str(config.parent),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "portal", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            ready = httpx.get(f"{url}/readyz", timeout=2)
            if ready.status_code == 200:
                break
            last = f"{ready.status_code} {ready.text[:300]}"
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError(f"instance B did not start ({last}): {proc.communicate()[0]!r}")
    yield url
    proc.terminate()
    output = proc.communicate(timeout=30)[0].decode()
    assert "Traceback" not in output, output


@pytest.fixture(scope="module")
async def pair(
    database_url: str,
    sessions: async_sessionmaker[AsyncSession],
    instance_b: str,
    fake_openai_server: FakeUpstream,
    fake_anthropic_server: FakeUpstream,
    fake_gemini_server: FakeUpstream,
    fake_bedrock_server: FakeUpstream,
) -> AsyncIterator[Pair]:
    models = model_list(fake_openai_server, fake_anthropic_server, fake_gemini_server, fake_bedrock_server)
    app = create_app(make_settings(database_url, models=models, redis_url=REDIS_URL))
    url, server, task = await serve(app)
    try:
        yield Pair(Running(url=url, app=app, sessions=sessions), instance_b)
    finally:
        server.should_exit = True
        await task


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}


async def _post(url: str, secret: str) -> int:
    async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
        response = await client.post(f"{url}/v1/chat/completions", json=CHAT, headers={"x-api-key": secret})
        return response.status_code


async def test_rate_limit_holds_across_instances(pair: Pair, fake_openai: FakeUpstream) -> None:
    secret, key_id, _ = await pair.a.new_key()
    await pair.a.limits(ApiKey, key_id, rpm_limit=4)
    codes = [await _post(url, secret) for url in (pair.a.url, pair.b_url, pair.a.url, pair.b_url)]
    assert codes == [200, 200, 200, 200]
    assert await _post(pair.b_url, secret) == 429
    assert await _post(pair.a.url, secret) == 429


async def test_budget_holds_across_instances(pair: Pair, fake_openai: FakeUpstream) -> None:
    secret, key_id, tenant_id = await pair.a.new_key()
    assert tenant_id is not None
    prompt = estimate_prompt_tokens(CHAT)
    fake_openai.default = Behaviour(prompt_tokens=prompt, completion_tokens=100)
    one = (Decimal("0.15") * prompt + Decimal("0.60") * 100) / Decimal(1_000_000)
    await pair.a.budget(SubjectType.TENANT, tenant_id, str(one * 3 + one / 2))
    codes = [await _post(url, secret) for url in (pair.a.url, pair.b_url, pair.a.url, pair.b_url, pair.a.url)]
    assert codes[:3] == [200, 200, 200]
    assert codes[3:] == [402, 402]
    rows = await pair.a.logs(key_id)
    for _ in range(50):
        if len(rows) == 5:
            break
        await asyncio.sleep(0.1)
        rows = await pair.a.logs(key_id)
    assert sum((r.cost for r in rows), Decimal(0)) == one * 3


async def test_revocation_reaches_the_other_instance_at_once(pair: Pair, fake_openai: FakeUpstream) -> None:
    secret, key_id, _ = await pair.a.new_key()
    assert await _post(pair.b_url, secret) == 200
    async with pair.a.sessions() as session, session.begin():
        await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(status=KeyStatus.REVOKED))
    pair.a.gateway.invalidate(hash_key(secret))
    for _ in range(40):
        if await _post(pair.b_url, secret) == 401:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("instance B kept accepting a revoked key")
    assert await _post(pair.a.url, secret) == 401
