"""Pytest fixtures for the fake upstreams: one server per provider for the session, reset per test.

``fake_openai`` / ``fake_anthropic`` / ``fake_gemini`` / ``fake_bedrock`` give a fresh-state
:class:`~tests.fakes.server.FakeUpstream`; ``upstream_http`` is the proxy's own
:class:`~portal.proxy.providers.client.UpstreamClient` (aiohttp, proxy environment variables ignored),
closed after the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from portal.proxy.providers.base import UpstreamClient
from tests.fakes.anthropic_fake import AnthropicWire
from tests.fakes.bedrock_fake import BedrockWire
from tests.fakes.gemini_fake import GeminiWire
from tests.fakes.openai_fake import OpenAIWire
from tests.fakes.server import FakeUpstream


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[FakeUpstream]:
    with FakeUpstream(OpenAIWire()) as fake:
        yield fake


@pytest.fixture(scope="session")
def fake_anthropic_server() -> Iterator[FakeUpstream]:
    with FakeUpstream(AnthropicWire()) as fake:
        yield fake


@pytest.fixture(scope="session")
def fake_gemini_server() -> Iterator[FakeUpstream]:
    with FakeUpstream(GeminiWire()) as fake:
        yield fake


@pytest.fixture(scope="session")
def fake_bedrock_server() -> Iterator[FakeUpstream]:
    with FakeUpstream(BedrockWire()) as fake:
        yield fake


@pytest.fixture
def fake_openai(fake_openai_server: FakeUpstream) -> FakeUpstream:
    fake_openai_server.reset()
    return fake_openai_server


@pytest.fixture
def fake_anthropic(fake_anthropic_server: FakeUpstream) -> FakeUpstream:
    fake_anthropic_server.reset()
    return fake_anthropic_server


@pytest.fixture
def fake_gemini(fake_gemini_server: FakeUpstream) -> FakeUpstream:
    fake_gemini_server.reset()
    return fake_gemini_server


@pytest.fixture
def fake_bedrock(fake_bedrock_server: FakeUpstream) -> FakeUpstream:
    fake_bedrock_server.reset()
    return fake_bedrock_server


@pytest.fixture
async def upstream_http() -> AsyncIterator[UpstreamClient]:
    client = UpstreamClient()
    try:
        yield client
    finally:
        await client.aclose()
