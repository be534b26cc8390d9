"""One pooled client per upstream, and the one place transport errors are mapped.

Three clients share one small interface (``build_request``, ``send``, a response with ``status_code``,
``headers``, ``aiter_bytes``, ``aread``, ``aclose``):

- :class:`~.lean_http.LeanClient`, the default: the gateway's own HTTP/1.1 client on httptools' parser,
  doing only what the router asks (about half the Python per request of aiohttp's; docs/benchmarks.md).
- :class:`AiohttpClient`: aiohttp's connection pool called directly. Measured against httpx's own pool and
  against httpx's API over aiohttp (``httpx-aiohttp``), it spent the least CPU per request of the three.
- :class:`HttpxClient`: any ``httpx`` transport — httpx's own pool (``router.transport: httpx``), or the
  ``transports={base_url: ...}`` tests and in-process providers pass (``httpx.MockTransport``,
  ``asgi_aigw.testing.StreamingASGITransport``).

None keeps cookies: a shared cookie jar would carry one tenant's upstream cookies into another
tenant's requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
from collections.abc import AsyncIterator, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol
from urllib.parse import urlsplit

import httpx

from ..kernel.errors import GatewayError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from ..providers.base import Deployment, Timeout

if TYPE_CHECKING:
    import aiohttp


@lru_cache(maxsize=256)
def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class UpstreamResponse(Protocol):
    """An upstream answer whose body has not been read yet (``httpx.Response`` fits as it is)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def aiter_bytes(self) -> AsyncIterator[bytes]: ...

    async def aread(self) -> bytes: ...

    async def aclose(self) -> None: ...


class UpstreamClient(Protocol):
    def build_request(
        self, method: str, url: str, *, headers: Mapping[str, str], content: bytes, timeout: Timeout
    ) -> Any: ...

    async def send(self, request: Any) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


# -- aiohttp ---------------------------------------------------------------------------------------


class _AiohttpRequest(NamedTuple):
    method: str
    url: Any  # yarl.URL
    headers: Mapping[str, str]
    content: bytes
    timeout: Any  # aiohttp.ClientTimeout


class _AiohttpResponse:
    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    @property
    def status_code(self) -> int:
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers  # case-insensitive

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.content.iter_any():
            yield chunk

    async def aread(self) -> bytes:
        return await self._response.read()

    async def aclose(self) -> None:
        # release() returns a fully read connection to the pool and closes one read only in part,
        # which is what tells the upstream that the client went away
        self._response.release()


class AiohttpClient:
    """aiohttp's pool for one upstream; the session opens on first use, on the running loop."""

    __slots__ = ("_max_connections", "_session", "_timeouts", "_urls")

    def __init__(self, max_connections: int) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, Any] = {}
        self._timeouts: dict[Timeout, Any] = {}

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=self._max_connections,
            keepalive_timeout=30,
            ssl=ssl.create_default_context(),
            # the gateway talks to a handful of upstreams: cache their DNS answers
            ttl_dns_cache=300,
        )
        # trust_env=False: with it aiohttp reads ~/.netrc and the proxy variables in a thread on every request
        return aiohttp.ClientSession(
            connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar()
        )

    def build_request(
        self, method: str, url: str, *, headers: Mapping[str, str], content: bytes, timeout: Timeout
    ) -> _AiohttpRequest:
        parsed = self._urls.get(url)
        if parsed is None:
            import yarl

            parsed = yarl.URL(url)
            if len(self._urls) < 1024:
                self._urls[url] = parsed
        client_timeout = self._timeouts.get(timeout)
        if client_timeout is None:
            import aiohttp

            client_timeout = aiohttp.ClientTimeout(
                total=None, connect=timeout.pool + timeout.connect, sock_connect=timeout.connect,
                sock_read=timeout.read,
            )  # fmt: skip
            self._timeouts[timeout] = client_timeout
        return _AiohttpRequest(method, parsed, headers, content, client_timeout)

    async def send(self, request: _AiohttpRequest) -> _AiohttpResponse:
        session = self._session
        if session is None:
            session = self._session = self._open()
        response = await session.request(
            request.method,
            request.url,
            headers=request.headers,
            data=request.content,
            timeout=request.timeout,
            allow_redirects=False,
        )
        return _AiohttpResponse(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# -- httpx transports ------------------------------------------------------------------------------


class HttpxClient:
    """httpx's request and response types over one transport, without ``AsyncClient``'s per-request
    extras (cookie jar, auth flow, redirects, URL merging)."""

    __slots__ = ("_transport", "_urls")

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport
        self._urls: dict[str, httpx.URL] = {}

    def build_request(
        self, method: str, url: str, *, headers: Mapping[str, str], content: bytes, timeout: Timeout
    ) -> httpx.Request:
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = httpx.URL(url)
            if len(self._urls) < 1024:
                self._urls[url] = parsed
        # Host and Content-Length given up front spare httpx a linear header scan for each.
        full = {"host": parsed.netloc.decode("ascii"), "content-length": str(len(content)), **headers}
        limits = {
            "connect": timeout.connect,
            "read": timeout.read,
            "write": timeout.write,
            "pool": timeout.pool,
        }
        return httpx.Request(method, parsed, headers=full, content=content, extensions={"timeout": limits})

    async def send(self, request: httpx.Request) -> httpx.Response:
        response = await self._transport.handle_async_request(request)
        response.request = request
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()


class UpstreamClients:
    """Clients keyed by upstream origin, opened lazily on first use, closed by :meth:`aclose`.

    A client belongs to the event loop that opened it; a router used from another loop (tests, or
    Django's sync-to-async threads) gets its own clients instead of a broken pool.
    """

    def __init__(
        self,
        *,
        transport: Literal["aiohttp", "httpx", "lean"] = "lean",
        max_connections: int = 256,
        transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    ) -> None:
        self._kind = transport
        self._max_connections = max_connections
        self._fixed = {origin_of(url): t for url, t in (transports or {}).items()}
        self._clients: dict[tuple[int, str], UpstreamClient] = {}

    def get(self, base_url: str) -> UpstreamClient:
        loop_id = id(asyncio.get_running_loop())
        origin = origin_of(base_url)
        client = self._clients.get((loop_id, origin))
        if client is None:
            client = self._open(origin)
            self._clients[(loop_id, origin)] = client
        return client

    def _open(self, origin: str) -> UpstreamClient:
        fixed = self._fixed.get(origin)
        if fixed is not None:
            return HttpxClient(fixed)
        if self._kind == "aiohttp":
            return AiohttpClient(self._max_connections)
        if self._kind == "lean":
            from .lean_http import LeanClient

            return LeanClient(origin, self._max_connections)
        limits = httpx.Limits(
            max_connections=self._max_connections, max_keepalive_connections=self._max_connections
        )
        return HttpxClient(httpx.AsyncHTTPTransport(limits=limits))

    async def aclose(self) -> None:
        loop_id = id(asyncio.get_running_loop())
        for key in [key for key in self._clients if key[0] == loop_id]:
            client = self._clients.pop(key)
            with contextlib.suppress(Exception):
                await client.aclose()


# -- errors ----------------------------------------------------------------------------------------


def _kind(exc: BaseException) -> str:
    """``connect``, ``timeout`` or ``broken`` for a failure of any of the clients."""
    from .lean_http import TransportError

    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError) or (isinstance(exc, TransportError) and exc.connect):
        return "connect"
    aiohttp: Any = sys.modules.get("aiohttp")  # imported only by the aiohttp client
    if aiohttp is not None:
        if isinstance(exc, aiohttp.ServerTimeoutError):
            return "timeout"
        if isinstance(exc, aiohttp.ClientConnectorError):
            return "connect"
    return "broken"


def map_transport_error(exc: BaseException, deployment: Deployment) -> GatewayError:
    """The gateway error for a failure to talk to an upstream (never includes the API key)."""
    where = f"{deployment.provider} ({origin_of(deployment.base_url)})"
    kind = _kind(exc)
    if kind == "connect":
        return UpstreamUnavailable(f"Could not connect to {where}.")
    if kind == "timeout":
        return UpstreamTimeout(f"{where} did not answer in time.")
    return UpstreamError(f"{where} closed the connection or sent a malformed answer.")


class mapped_transport_errors:
    """Turns a client's failure to reach ``deployment`` into the gateway's error for it (never with the
    API key). A class, not a generator: it wraps every upstream call, and a generator's context manager
    cost about 2 µs each time."""

    __slots__ = ("_deployment",)

    def __init__(self, deployment: Deployment) -> None:
        self._deployment = deployment

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            return
        deployment = self._deployment
        if isinstance(exc, _transport_errors()):
            raise map_transport_error(exc, deployment) from exc
        if isinstance(exc, OSError):  # a transport that does not map its errors
            raise UpstreamUnavailable(
                f"Could not reach {deployment.provider}: {exc.strerror or exc}"
            ) from exc


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The failures of every client in use: aiohttp's only once its client imported it (the lean
    client and httpx's never load it)."""
    from .lean_http import TransportError

    aiohttp: Any = sys.modules.get("aiohttp")
    if aiohttp is None:
        return (httpx.HTTPError, TimeoutError, TransportError)
    return (httpx.HTTPError, TimeoutError, TransportError, aiohttp.ClientError)
