"""The one interface every upstream provider adapter implements, and the types it speaks.

The proxy always talks OpenAI's wire format to its clients. An adapter turns an OpenAI-shaped request
(already parsed into a ``dict``) into its provider's request, sends it with the shared
:class:`~portal.proxy.providers.client.UpstreamClient` it is given, and turns the answer back into
OpenAI-shaped bytes plus the usage it reported. Adapters hold no per-request state and never read
credentials from the client request: everything about the upstream comes from the :class:`Target` the
router resolved from the catalog.

Errors: every failure is raised as :class:`UpstreamError` with the upstream's HTTP status (or 502/504
for transport failures) and a ``retryable`` flag the router uses for retries, cooldowns and fallbacks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "ChatResult",
    "ProviderAdapter",
    "ProviderStream",
    "Target",
    "UpstreamClient",
    "UpstreamError",
    "Usage",
]


@dataclass(slots=True)
class Usage:
    """Token counts for one call; ``estimated`` when the upstream reported nothing and we counted."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True, frozen=True)
class Target:
    """A resolved deployment: where and how to call the upstream. Built by the router, never by clients."""

    provider: str
    upstream_model: str
    api_base: str | None = None
    api_key: str | None = None
    """The decrypted secret (API key; for Bedrock ``ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]``)."""
    api_version: str | None = None
    region: str | None = None
    timeout_s: float = 600.0
    extra_headers: tuple[tuple[str, str], ...] = ()
    deployment_id: str | None = None


@dataclass(slots=True)
class ChatResult:
    """A complete non-streaming answer: OpenAI-shaped JSON ``body`` and its usage (``None`` if unreported)."""

    body: bytes
    usage: Usage | None


class UpstreamError(Exception):
    """The upstream failed or refused. ``status`` is passed back to the client for 4xx answers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "upstream_error",
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(slots=True)
class ProviderStream:
    """An open streaming answer.

    Iterating ``events`` yields complete OpenAI SSE frames as bytes (``b"data: {...}\\n\\n"``, ending
    with ``b"data: [DONE]\\n\\n"``). While it is consumed the adapter keeps ``usage`` up to date from
    the upstream's usage reports and ``delivered_chars`` (characters of content and tool-call
    arguments yielded so far), so a caller that stops early can bill what was delivered.
    ``aclose`` releases the upstream connection; it is safe to call twice.
    """

    events: AsyncIterator[bytes]
    usage: Usage | None = None
    delivered_chars: int = 0
    closers: list[Any] = field(default_factory=list)

    async def aclose(self) -> None:
        closers, self.closers = self.closers, []
        for closer in closers:
            await closer()


class ProviderAdapter(Protocol):
    """What the router needs from a provider. Implementations are stateless singletons."""

    name: str

    async def chat(self, client: UpstreamClient, target: Target, body: dict[str, Any]) -> ChatResult:
        """Non-streaming ``/v1/chat/completions``."""
        ...

    async def stream_chat(
        self, client: UpstreamClient, target: Target, body: dict[str, Any]
    ) -> ProviderStream:
        """Streaming ``/v1/chat/completions``; raises :class:`UpstreamError` before any byte on failure."""
        ...

    async def completions(self, client: UpstreamClient, target: Target, body: dict[str, Any]) -> ChatResult:
        """Legacy ``/v1/completions`` (non-streaming)."""
        ...

    async def embeddings(self, client: UpstreamClient, target: Target, body: dict[str, Any]) -> ChatResult:
        """``/v1/embeddings``."""
        ...


# The shared HTTP client adapters are given (one per process, keep-alive pooled). Imported last because
# its module needs Target and UpstreamError from this one.
from portal.proxy.providers.client import UpstreamClient  # noqa: E402
