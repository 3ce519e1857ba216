"""The shared upstream HTTP client: one long-lived keep-alive ``aiohttp`` session per process.

:class:`UpstreamClient` is built synchronously when the app is built (there may be no event loop yet)
and opens its ``aiohttp.ClientSession`` on first use (or in :meth:`UpstreamClient.start`) inside the
running loop. It offers exactly what the adapters need:

* :meth:`UpstreamClient.post` sends a POST and returns the fully read :class:`UpstreamResponse`;
* :meth:`UpstreamClient.open_stream` sends a POST and returns an :class:`UpstreamStreamResponse`
  whose body is read with :meth:`UpstreamStreamResponse.iter_chunks` and whose connection goes back
  to the pool (or is closed, when the body was not read to the end) on
  :meth:`UpstreamStreamResponse.aclose`.

Both raise :class:`~portal.proxy.providers.base.UpstreamError`: a retryable 502/504 for transport
failures (refused, reset, timed out) and the upstream's status for HTTP error answers.
Redirects are never followed, proxy environment variables are ignored, and cookies are neither
stored nor sent (one session serves every tenant).
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import ssl
from collections.abc import AsyncIterator, Mapping
from urllib.parse import quote

import aiohttp
import certifi
from aiohttp.connector import NEEDS_CLEANUP_CLOSED
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from portal.proxy.providers.base import Target
from portal.proxy.providers.transport import error_from_response, transport_error

__all__ = ["TRANSPORT_ERRORS", "UpstreamClient", "UpstreamResponse", "UpstreamStreamResponse"]

TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, asyncio.TimeoutError)
"""What aiohttp raises when there is no (complete) HTTP answer; mapped by ``transport_error``."""

_PLAIN_TIMEOUTS: dict[float, aiohttp.ClientTimeout] = {}
_STREAM_TIMEOUTS: dict[float, aiohttp.ClientTimeout] = {}
_URLS: dict[str, URL] = {}
_MAX_CACHED_URLS = 4096
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"
"""Reserved characters and ``%`` stay as written (like httpx); anything else invalid is escaped."""


def _plain_timeout(seconds: float) -> aiohttp.ClientTimeout:
    timeout = _PLAIN_TIMEOUTS.get(seconds)
    if timeout is None:
        timeout = aiohttp.ClientTimeout(total=seconds, sock_connect=min(seconds, 10.0))
        _PLAIN_TIMEOUTS[seconds] = timeout
    return timeout


def _stream_timeout(seconds: float) -> aiohttp.ClientTimeout:
    timeout = _STREAM_TIMEOUTS.get(seconds)
    if timeout is None:
        timeout = aiohttp.ClientTimeout(
            total=None, connect=seconds, sock_connect=min(seconds, 10.0), sock_read=seconds
        )
        _STREAM_TIMEOUTS[seconds] = timeout
    return timeout


def _url(url: str) -> URL:
    """``url`` as sent: percent-escapes kept as written (a SigV4 signature covers the exact path)."""
    parsed = _URLS.get(url)
    if parsed is None:
        try:
            parsed = URL(quote(url, safe=_URL_SAFE), encoded=True) if url.isascii() else URL(url)
        except ValueError as exc:
            raise transport_error(aiohttp.InvalidURL(url)) from exc
        if len(_URLS) >= _MAX_CACHED_URLS:
            _URLS.clear()
        _URLS[url] = parsed
    return parsed


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """Verify upstream certificates against certifi's CA bundle, as httpx did."""
    return ssl.create_default_context(cafile=certifi.where())


def _charset(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"')
            try:
                return codecs.lookup(charset).name
            except LookupError:
                break
    return "utf-8"


class UpstreamResponse:
    """A complete upstream answer; its connection is already back in the pool."""

    __slots__ = ("content", "headers", "reason", "status")

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str] | None = None,
        content: bytes = b"",
        reason: str | None = None,
    ) -> None:
        self.status = status
        self.headers: CIMultiDictProxy[str] = (
            headers if isinstance(headers, CIMultiDictProxy) else CIMultiDictProxy(CIMultiDict(headers or {}))
        )
        """Case-insensitive."""
        self.content = content
        self.reason = reason

    @property
    def text(self) -> str:
        """The body decoded with the charset of its ``Content-Type`` (UTF-8 by default), lossily."""
        return self.content.decode(_charset(self.headers.get("Content-Type", "")), errors="replace")

    def __repr__(self) -> str:
        return f"<UpstreamResponse {self.status} {len(self.content)} bytes>"


class UpstreamStreamResponse:
    """A successful upstream answer whose body is still being received; always :meth:`aclose` it."""

    __slots__ = ("_response", "headers", "reason", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: CIMultiDictProxy[str] = response.headers
        self.reason = response.reason

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; a broken or stalled stream raises a retryable ``UpstreamError``."""
        read = self._response.content.readany
        try:
            while chunk := await read():
                yield chunk
        except TRANSPORT_ERRORS as exc:
            raise transport_error(exc) from None

    async def aclose(self) -> None:
        """Give the connection back to the pool, or close it if the body was not read to the end.

        Safe to call more than once.
        """
        self._response.release()

    def __repr__(self) -> str:
        return f"<UpstreamStreamResponse {self.status}>"


class UpstreamClient:
    """The process-wide upstream HTTP client (keep-alive pooled); see the module docstring.

    ``limit`` caps open connections in total (0: no cap), ``limit_per_host`` per upstream host
    (0: no cap), ``keepalive_timeout`` is how long an idle connection is kept.
    """

    def __init__(
        self, *, limit: int = 2000, limit_per_host: int = 0, keepalive_timeout: float = 60.0
    ) -> None:
        self.limit = limit
        self.limit_per_host = limit_per_host
        self.keepalive_timeout = keepalive_timeout
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the upstream client is closed")
        connector = aiohttp.TCPConnector(
            limit=self.limit,
            limit_per_host=self.limit_per_host,
            keepalive_timeout=self.keepalive_timeout,
            ttl_dns_cache=300,
            enable_cleanup_closed=NEEDS_CLEANUP_CLOSED,
            ssl=_ssl_context(),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=_plain_timeout(600.0),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            raise_for_status=False,
            auto_decompress=True,
        )
        return self._session

    async def start(self) -> None:
        """Open the session now instead of on the first request (must run inside the event loop)."""
        if self._session is None:
            self._open()

    async def aclose(self) -> None:
        """Close every upstream connection; the client cannot be used afterwards. Idempotent."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def post(
        self, target: Target, url: str, headers: Mapping[str, str], content: bytes
    ) -> UpstreamResponse:
        """POST ``content`` and return the successful, fully read answer.

        Raises ``UpstreamError``: the upstream's status for an HTTP error answer, 502/504 (retryable)
        when there is no complete answer within ``target.timeout_s``.
        """
        session = self._session or self._open()
        try:
            response = await session.request(
                "POST",
                _url(url),
                data=content,
                headers=headers,
                timeout=_plain_timeout(target.timeout_s),
                allow_redirects=False,
            )
            try:
                body = await response.read()
            finally:
                response.release()
        except TRANSPORT_ERRORS as exc:
            raise transport_error(exc) from None
        answer = UpstreamResponse(response.status, response.headers, body, response.reason)
        if answer.status >= 400:
            raise error_from_response(answer)
        return answer

    async def open_stream(
        self, target: Target, url: str, headers: Mapping[str, str], content: bytes
    ) -> UpstreamStreamResponse:
        """POST ``content`` and return the successful answer with its body unread (``aclose`` it).

        ``target.timeout_s`` bounds getting a connection (10 s at most to connect) and each wait for
        data, not the whole stream.
        Raises ``UpstreamError`` like :meth:`post`, before any body byte is handed out.
        """
        session = self._session or self._open()
        try:
            response = await session.request(
                "POST",
                _url(url),
                data=content,
                headers=headers,
                timeout=_stream_timeout(target.timeout_s),
                allow_redirects=False,
            )
        except TRANSPORT_ERRORS as exc:
            raise transport_error(exc) from None
        if response.status < 400:
            return UpstreamStreamResponse(response)
        try:
            body = await response.read()
        except TRANSPORT_ERRORS as exc:
            raise transport_error(exc) from None
        finally:
            response.release()
        raise error_from_response(UpstreamResponse(response.status, response.headers, body, response.reason))

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._session is not None else "not started"
        return f"<UpstreamClient {state} limit={self.limit}>"
