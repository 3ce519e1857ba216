"""The provider registry: which adapter serves each ``provider`` name of the catalog."""

from __future__ import annotations

from portal.proxy.providers.anthropic import AnthropicAdapter
from portal.proxy.providers.base import ProviderAdapter
from portal.proxy.providers.bedrock import BedrockAdapter
from portal.proxy.providers.gemini import GeminiAdapter
from portal.proxy.providers.mock import MockAdapter
from portal.proxy.providers.openai import OpenAIAdapter

__all__ = ["PROVIDERS", "get_adapter"]

_ADAPTERS: dict[str, ProviderAdapter] = {
    "openai": OpenAIAdapter("openai", "https://api.openai.com/v1"),
    "azure": OpenAIAdapter("azure", None, azure=True),
    "vllm": OpenAIAdapter("vllm", "http://localhost:8000/v1"),
    "ollama": OpenAIAdapter("ollama", "http://localhost:11434/v1"),
    "anthropic": AnthropicAdapter(),
    "gemini": GeminiAdapter(),
    "bedrock": BedrockAdapter(),
    "mock": MockAdapter(),
}

PROVIDERS: tuple[str, ...] = tuple(_ADAPTERS)


def get_adapter(provider: str) -> ProviderAdapter:
    """The adapter for ``provider``; raises :class:`KeyError` for an unknown name."""
    try:
        return _ADAPTERS[provider]
    except KeyError:
        raise KeyError(f"unknown provider {provider!r}") from None
