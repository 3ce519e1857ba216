"""Fake upstream providers speaking the real wire formats over HTTP on 127.0.0.1, for tests.

Register the pytest fixtures with ``pytest_plugins = ["tests.fakes.fixtures"]`` in the root conftest.
"""

from tests.fakes.anthropic_fake import AnthropicWire
from tests.fakes.bedrock_fake import BedrockWire
from tests.fakes.gemini_fake import GeminiWire
from tests.fakes.openai_fake import OpenAIWire
from tests.fakes.server import Behaviour, FakeUpstream, Recorded

__all__ = [
    "AnthropicWire",
    "BedrockWire",
    "Behaviour",
    "FakeUpstream",
    "GeminiWire",
    "OpenAIWire",
    "Recorded",
]
